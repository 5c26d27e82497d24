#pragma once
// The deterministic GEMM of reference/NUMERICS.md on the device:
//   out[r][o] = sum over d of a[r][d] * w[o][d]
// with ONE accumulator per output element that starts at 0 and adds its products for
// d = 0, 1, ..., k-1 strictly ascending: no split-K, no atomics, no tree reduction, so a row's
// bits never depend on the tile shape, the row count or the other rows. `fused` adds each
// product with a fused multiply-add; the caller sets it only where every product is exact in T
// (both operands bf16 values in float: 8 + 8 significant bits), where it gives the bits of a
// rounded product then a rounded sum. `round_bf16` rounds each output to bf16 (a bf16 kernel's
// output store).
#include <cstdint>

#include "vendor.hpp"

namespace moesim::gpu {

// a: [n, lda], w: [m, ldw] (both contiguous in d), out: [n, ldo]; only out[r][o < m] is written.
template <class T>
void gemm_nt(T* out, std::int64_t ldo, const T* a, std::int64_t lda, const T* w, std::int64_t ldw, std::int64_t n,
             int m, int k, bool fused, bool round_bf16, hipStream_t stream);

}  // namespace moesim::gpu
