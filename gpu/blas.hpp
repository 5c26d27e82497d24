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

 private:
  [[maybe_unused]] void* handle_ = nullptr;  // unused where the build has no vendor BLAS
};

}  // namespace moesim::gpu
