#include "gemm.hpp"

#include "check.hpp"
#include "round.hpp"

namespace moesim::gpu {
namespace {

// One product added to the accumulator, in the order NUMERICS.md fixes.
template <class T, bool kFused>
__device__ inline T mac(T acc, T a, T w);
template <>
__device__ inline float mac<float, false>(float acc, float a, float w) { return __fadd_rn(acc, __fmul_rn(a, w)); }
template <>
__device__ inline float mac<float, true>(float acc, float a, float w) { return __fmaf_rn(a, w, acc); }
template <>
__device__ inline double mac<double, false>(double acc, double a, double w) { return __dadd_rn(acc, __dmul_rn(a, w)); }
template <>
__device__ inline double mac<double, true>(double acc, double a, double w) { return __fma_rn(a, w, acc); }

// Tiles: BM rows of a x BN rows of w per block, BK depth per step; each thread owns TM x TN
// outputs and walks the whole depth for them in order. Depth past k is zero-padded in both
// operands: 0 * 0 adds +0, which leaves every accumulator (never -0: it starts at +0) unchanged.
template <class T, int BM, int BN, int BK, int TM, int TN, bool kFused>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    gemm_nt_kernel(T* __restrict__ out, std::int64_t ldo, const T* __restrict__ a, std::int64_t lda,
                   const T* __restrict__ w, std::int64_t ldw, std::int64_t n, int m, int k, bool round_bf16) {
  constexpr int kThreads = (BM / TM) * (BN / TN);
  __shared__ T as[BK][BM + 4];
  __shared__ T ws[BK][BN + 4];
  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.y) * BM;
  const int col0 = blockIdx.x * BN;

  T acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

  for (int d0 = 0; d0 < k; d0 += BK) {
    // Consecutive threads read consecutive depth of one row: coalesced along d.
    for (int e = tid; e < BM * BK; e += kThreads) {
      const int r = e / BK, dd = e % BK;
      const std::int64_t gr = row0 + r;
      const int gd = d0 + dd;
      as[dd][r] = (gr < n && gd < k) ? a[gr * lda + gd] : T(0);
    }
    for (int e = tid; e < BN * BK; e += kThreads) {
      const int o = e / BK, dd = e % BK;
      const int go = col0 + o, gd = d0 + dd;
      ws[dd][o] = (go < m && gd < k) ? w[static_cast<std::int64_t>(go) * ldw + gd] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int dd = 0; dd < BK; ++dd) {
      T av[TM], wv[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = as[dd][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; ++j) wv[j] = ws[dd][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = mac<T, kFused>(acc[i][j], av[i], wv[j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const std::int64_t r = row0 + ty * TM + i;
    if (r >= n) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int o = col0 + tx * TN + j;
      if (o >= m) continue;
      T v = acc[i][j];
      if (round_bf16) v = static_cast<T>(hd::round_bf16(static_cast<float>(v)));
      out[r * ldo + o] = v;
    }
  }
}

template <class T, int BM, int BN, int BK, int TM, int TN>
void launch(T* out, std::int64_t ldo, const T* a, std::int64_t lda, const T* w, std::int64_t ldw, std::int64_t n,
            int m, int k, bool fused, bool round_bf16, hipStream_t stream) {
  const dim3 grid((m + BN - 1) / BN, static_cast<unsigned>((n + BM - 1) / BM));
  const dim3 block((BM / TM) * (BN / TN));
  if (fused)
    gemm_nt_kernel<T, BM, BN, BK, TM, TN, true><<<grid, block, 0, stream>>>(out, ldo, a, lda, w, ldw, n, m, k, round_bf16);
  else
    gemm_nt_kernel<T, BM, BN, BK, TM, TN, false><<<grid, block, 0, stream>>>(out, ldo, a, lda, w, ldw, n, m, k, round_bf16);
  MOESIM_GPU_CHECK_LAUNCH();
}

}  // namespace

template <>
void gemm_nt<float>(float* out, std::int64_t ldo, const float* a, std::int64_t lda, const float* w, std::int64_t ldw,
                    std::int64_t n, int m, int k, bool fused, bool round_bf16, hipStream_t stream) {
  if (n <= 0 || m <= 0) return;
  launch<float, 128, 128, 16, 8, 8>(out, ldo, a, lda, w, ldw, n, m, k, fused, round_bf16, stream);
}

template <>
void gemm_nt<double>(double* out, std::int64_t ldo, const double* a, std::int64_t lda, const double* w,
                     std::int64_t ldw, std::int64_t n, int m, int k, bool fused, bool round_bf16, hipStream_t stream) {
  if (n <= 0 || m <= 0) return;
  launch<double, 64, 64, 16, 4, 4>(out, ldo, a, lda, w, ldw, n, m, k, fused, round_bf16, stream);
}

}  // namespace moesim::gpu
