#include "combine_quant.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "error.hpp"

namespace moesim::sim {

std::string_view name(CombineQuant q) {
  switch (q) {
    case CombineQuant::none: return "none";
    case CombineQuant::fp8_direct_cast: return "fp8_direct_cast";
    case CombineQuant::fp8_blockwise: return "fp8_blockwise";
  }
  return "?";
}

CombineQuant parse_combine_quant(std::string_view s) {
  for (auto q : {CombineQuant::none, CombineQuant::fp8_direct_cast, CombineQuant::fp8_blockwise})
    if (name(q) == s) return q;
  throw Error("unknown combine quantization '" + std::string(s) + "' (expected none, fp8_direct_cast, fp8_blockwise)");
}

void quantize_combine_row(const CombineQuantOptions& o, const float* row, int H, float* q_out, float* s_out) {
  const float fmax = fp8_max(o.fp8);
  if (o.type != CombineQuant::fp8_blockwise) {
    for (int h = 0; h < H; ++h) q_out[h] = o.type == CombineQuant::none ? row[h] : round_fp8(row[h], o.fp8);
    std::fill(s_out, s_out + H, 1.0f);
    return;
  }
  const int block = (H + o.scale_dim - 1) / o.scale_dim;
  const float inv_max = 1.0f / fmax;
  for (int b0 = 0; b0 < H; b0 += block) {
    const int b1 = std::min(H, b0 + block);
    float amax = 0.0f;
    for (int h = b0; h < b1; ++h)
      if (!std::isnan(row[h])) amax = std::max(amax, std::fabs(row[h]));  // MORI skips NaN payloads
    const bool scaled = amax > fmax;
    const float inv = scaled ? fmax / amax : 1.0f, s = scaled ? amax * inv_max : 1.0f;
    for (int h = b0; h < b1; ++h) {
      q_out[h] = round_fp8(scaled ? row[h] * inv : row[h], o.fp8);
      s_out[h] = s;
    }
  }
}

void accumulate_quantized(const float* q, const float* s, int H, float* acc) {
  for (int h = 0; h < H; ++h) acc[h] = std::fma(q[h], s[h], acc[h]);
}

}  // namespace moesim::sim
