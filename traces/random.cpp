#include "random.hpp"

#include <algorithm>
#include <thread>
#include <vector>

#include "error.hpp"
#include "generated_value.hpp"

namespace moesim {

void fill_generated(float* out, std::size_t n, const GeneratorSpec& spec, std::uint64_t stream, double stddev,
                    DType dtype, int threads) {
  const bool normal = spec.distribution == "normal";
  if (!normal && spec.distribution != "uniform")
    throw Error("unknown distribution '" + spec.distribution + "' (expected uniform or normal)");
  const auto fill = [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      float f = static_cast<float>(generated_value(stream, i, normal, stddev));
      if (dtype == DType::bf16) f = round_bf16(f);
      else if (dtype == DType::f16) f = round_f16(f);
      else if (is_fp8(dtype)) f = round_fp8(f, dtype);
      out[i] = f;
    }
  };
  // Each value is a function of its index alone, so any split gives the same bits.
  const std::size_t parts = std::min<std::size_t>(std::max(threads, 1), n / (1 << 16) + 1);
  if (parts == 1) return fill(0, n);
  std::vector<std::thread> pool;
  for (std::size_t p = 0; p < parts; ++p) pool.emplace_back(fill, n * p / parts, n * (p + 1) / parts);
  for (auto& t : pool) t.join();
}

}  // namespace moesim
