#include "run_to_run.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace moesim {
namespace {

// Position on the number line in ulps of the format: the sign-magnitude bits made monotonic.
std::int64_t ordered(double v, bool wide) {
  if (wide) {
    std::int64_t b;
    std::memcpy(&b, &v, 8);
    return b < 0 ? std::numeric_limits<std::int64_t>::min() - b : b;
  }
  const float f = static_cast<float>(v);
  std::int32_t b;
  std::memcpy(&b, &f, 4);
  return b < 0 ? std::int64_t{std::numeric_limits<std::int32_t>::min()} - b : b;
}

std::uint64_t distance(std::int64_t a, std::int64_t b) {
  return a > b ? static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b)
               : static_cast<std::uint64_t>(b) - static_cast<std::uint64_t>(a);
}

bool same_bits(double a, double b, bool wide) {
  if (wide) return std::memcmp(&a, &b, 8) == 0;
  const float x = static_cast<float>(a), y = static_cast<float>(b);
  return std::memcmp(&x, &y, 4) == 0;
}

}  // namespace

void RunToRun::add(const LayerOutputs& a, const LayerOutputs& b, Numerics numerics) {
  const bool bf16 = rounds_bf16(numerics);
  unit = bf16 ? "bf16" : (is_f64(numerics) ? "float64" : "float32");
  for (std::size_t r = 0; r < a.ranks.size() && r < b.ranks.size(); ++r) {
    const Values& x = a.ranks[r].final_out;
    const Values& y = b.ranks[r].final_out;
    const std::size_t n = std::min(x.size(), y.size());
    const std::size_t H = a.ranks[r].num_tokens > 0 ? n / static_cast<std::size_t>(a.ranks[r].num_tokens) : 1;
    elements += static_cast<std::int64_t>(n);
    for (std::size_t i = 0; i < n; ++i) {
      max_value = std::max(max_value, std::fabs(x[i]));
      if (same_bits(x[i], y[i], x.wide)) continue;
      max_abs = std::max(max_abs, std::fabs(x[i] - y[i]));
      ++changed;
      std::uint64_t d = distance(ordered(x[i], x.wide), ordered(y[i], x.wide));
      if (bf16) d >>= 16;  // bf16 values in float: the low 16 bits are zero
      max_ulps = std::max(max_ulps, d);
      if (first.empty())
        first = "rank " + std::to_string(r) + " token " + std::to_string(i / H) + " column " + std::to_string(i % H);
    }
  }
}

std::string RunToRun::text() const {
  std::string s = std::to_string(changed) + " of " + std::to_string(elements) + " final_out elements changed";
  if (changed) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ", max |diff| %.3g = %.2g of the largest |value|", max_abs,
                  max_value > 0 ? max_abs / max_value : 0.0);
    s += " (max " + std::to_string(max_ulps) + " " + unit + " ulp" + buf + "), first at " + first;
  }
  return s;
}

}  // namespace moesim
