#include "quantize.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {

void quantize_blocks(const float* in, std::int64_t rows, int hidden, int block, DType fp8, float* values_out,
                     float* scales_out) {
  const int nblocks = (hidden + block - 1) / block;
  const float fmax = fp8_max(fp8);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int b = 0; b < nblocks; ++b) {
      const int c0 = b * block, c1 = std::min(hidden, c0 + block);
      float amax = 0.0f;
      for (int c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(in[r * hidden + c]));
      const float scale = std::max(amax, 1e-10f) / fmax;
      scales_out[r * nblocks + b] = scale;
      for (int c = c0; c < c1; ++c) values_out[r * hidden + c] = round_fp8(in[r * hidden + c] / scale, fp8);
    }
  }
}

}  // namespace moesim
