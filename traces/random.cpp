#include "random.hpp"

#include <cmath>
#include <numbers>

#include "error.hpp"

namespace moesim {

void fill_generated(float* out, std::size_t n, const GeneratorSpec& spec, std::uint64_t stream, double stddev,
                    DType dtype) {
  const bool normal = spec.distribution == "normal";
  if (!normal && spec.distribution != "uniform")
    throw Error("unknown distribution '" + spec.distribution + "' (expected uniform or normal)");
  const double a = std::sqrt(3.0) * stddev;  // uniform on [-a, a) has standard deviation `stddev`
  for (std::size_t i = 0; i < n; ++i) {
    double v;
    if (normal) {  // Box-Muller on two independent counters
      double u1 = 1.0 - uniform01(stream, 2 * i), u2 = uniform01(stream, 2 * i + 1);
      v = stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    } else {
      v = a * (2.0 * uniform01(stream, i) - 1.0);
    }
    float f = static_cast<float>(v);
    if (dtype == DType::bf16) f = round_bf16(f);
    else if (dtype == DType::f16) f = round_f16(f);
    else if (is_fp8(dtype)) f = round_fp8(f, dtype);
    out[i] = f;
  }
}

}  // namespace moesim
