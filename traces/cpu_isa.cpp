#include "cpu_isa.hpp"

#include <cstdlib>
#include <string>

#include "error.hpp"

namespace moesim {

bool cpu_has_avx2(bool needs_fma, bool built) {
#if defined(__x86_64__)
  return built && __builtin_cpu_supports("avx2") && (!needs_fma || __builtin_cpu_supports("fma"));
#else
  return false;
#endif
}

bool choose_avx2(const char* variable, bool needs_fma, bool built) {
  const char* e = std::getenv(variable);
  if (!e) return cpu_has_avx2(needs_fma, built);
  const std::string v = e;
  if (v != "sse2" && v != "avx2") throw Error(std::string(variable) + ": '" + v + "' is not sse2 or avx2");
  if (v == "avx2" && !cpu_has_avx2(needs_fma, built))
    throw Error(std::string(variable) + ": this CPU (or build) has no avx2");
  return v == "avx2";
}

}  // namespace moesim
