#pragma once
// Per-token block quantization to fp8 as dispatch-side quantizers of real stacks do it
// (1 x block groups, one fp32 scale each): scale = max(amax, 1e-10) / fp8_max, q = x / scale
// rounded to nearest even, saturating at +-fp8_max.
#include <cstdint>

#include "dtype.hpp"

namespace moesim {

// in: [rows, hidden]; values_out: [rows, hidden] the fp8 values (not yet multiplied back);
// scales_out: [rows, ceil(hidden / block)].
void quantize_blocks(const float* in, std::int64_t rows, int hidden, int block, DType fp8, float* values_out,
                     float* scales_out);

}  // namespace moesim
