#pragma once
// The fast mode's GEMMs through the vendor BLAS (cuBLAS, or hipBLAS where the build has it):
// bf16 operands, fp32 accumulation in the library's own order, bf16 output rounded to nearest
// even. Held to the bf16 rounding bound, not to bits (reference/NUMERICS.md, "Fast mode").
#include <cstdint>

#include "vendor.hpp"

namespace moesim::gpu {

class Blas {
 public:
  // Throws Error "fast mode needs hipBLAS ..." when the build has none.
  explicit Blas(hipStream_t stream);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  // out[r][o] = sum_d a[r][d] * w[o][d]: a [n, k], w [m, k], out [n, m], all bf16 bit patterns
  // (uint16), row-major and dense.
  void gemm_nt_bf16(std::uint16_t* out, const std::uint16_t* a, const std::uint16_t* w, std::int64_t n, int m,
                    int k);
  // The same product on fp8 e4m3 operands with one float scale per 1 x 128 block of depth
  // (k a multiple of 128): out[r][o] = sum_b a_scale[b][r] * w_scale[b][o] * sum_{d in b}
  // a[r][d] * w[o][d], fp32 accumulation, bf16 output. a [n, k], w [m, k] bytes; a_scale [k/128][n],
  // w_scale [k/128][m]. Throws Error where the build has no vendor BLASLt (AMD builds today).
  void gemm_nt_fp8(std::uint16_t* out, const std::uint8_t* a, const float* a_scale, const std::uint8_t* w,
                   const float* w_scale, std::int64_t n, int m, int k);

 private:
  [[maybe_unused]] void* handle_ = nullptr;  // unused where the build has no vendor BLAS
  [[maybe_unused]] void* lt_ = nullptr;      // the BLASLt handle, made at the first fp8 GEMM
  [[maybe_unused]] void* workspace_ = nullptr;
  [[maybe_unused]] hipStream_t stream_{};
};

}  // namespace moesim::gpu
