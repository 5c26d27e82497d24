#pragma once
// MORI's combine quantization (EpDispatchCombineConfig quant_type; ROCm/mori
// include/mori/core/transport/p2p/device_primitives.hpp): each row a destination rank returns is
// sent as fp8 and the source adds the dequantized values in float32.
//   fp8_direct_cast: q = fp8(row), saturating at +-fp8_max, round to nearest even; s = 1.
//   fp8_blockwise:   scale_dim blocks of ceil(H / scale_dim) elements (MORI_FP8_COMBINE_SCALE_DIM,
//                    56 by default: 128 at H = 7168). A block whose max |x| exceeds fp8_max is
//                    scaled: inv = fl(fp8_max / amax), s = fl(amax * fl(1 / fp8_max)),
//                    q = fp8(fl(x * inv)); any other block has s = 1, q = fp8(x).
// fp8_max: 448 for OCP e4m3fn, 240 for e4m3fnuz (MI300's format).
#include <string_view>

#include "dtype.hpp"

namespace moesim::sim {

enum class CombineQuant { none, fp8_direct_cast, fp8_blockwise };
std::string_view name(CombineQuant q);
CombineQuant parse_combine_quant(std::string_view s);

struct CombineQuantOptions {
  CombineQuant type = CombineQuant::none;
  DType fp8 = DType::e4m3;
  int scale_dim = 56;
};

// Quantizes one returned row [H] of bf16 values: q_out [H] the fp8 values, s_out [H] each
// element's block scale. The source adds fl(acc + q * s) fused, as hipcc contracts it
// (accumulate_quantized).
void quantize_combine_row(const CombineQuantOptions& o, const float* row, int hidden, float* q_out, float* s_out);
// acc[h] = fma(q[h], s[h], acc[h]) for every h.
void accumulate_quantized(const float* q, const float* s, int hidden, float* acc);

}  // namespace moesim::sim
