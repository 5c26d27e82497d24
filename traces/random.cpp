#include "random.hpp"

#include "error.hpp"
#include "generated_value.hpp"

namespace moesim {

void fill_generated(float* out, std::size_t n, const GeneratorSpec& spec, std::uint64_t stream, double stddev,
                    DType dtype) {
  const bool normal = spec.distribution == "normal";
  if (!normal && spec.distribution != "uniform")
    throw Error("unknown distribution '" + spec.distribution + "' (expected uniform or normal)");
  for (std::size_t i = 0; i < n; ++i) {
    float f = static_cast<float>(generated_value(stream, i, normal, stddev));
    if (dtype == DType::bf16) f = round_bf16(f);
    else if (dtype == DType::f16) f = round_f16(f);
    else if (is_fp8(dtype)) f = round_fp8(f, dtype);
    out[i] = f;
  }
}

}  // namespace moesim
