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

// Tiles: BM rows of a x BN rows of w per block, BK depth per step, 256 threads as 16 x 16; each
// thread owns 8 x 8 outputs (rows ty*4 + {0..3} and BM/2 + ty*4 + {0..3}, columns likewise), so
// its shared-memory reads are 16-byte vectors without bank conflicts, and walks the whole depth
// for them in order. Two shared-memory stages: the next tile's global loads are in flight while
// the current one is multiplied. Depth past k is zero-padded in both operands: 0 * 0 adds +0,
// which leaves every accumulator (never -0: it starts at +0) unchanged.
constexpr int kBK = 8, kThreads = 256;

template <class T>
struct Tile {
  static constexpr int BM = sizeof(T) == 4 ? 128 : 64;  // rows (and columns) per block
  static constexpr int TM = BM / 16;                     // outputs per thread per dimension
  static constexpr int Q = TM / 2;                       // contiguous outputs per group
  static constexpr int LOADS = BM * kBK / kThreads;      // elements per thread per operand
};

// One tile of an operand, [BM rows, kBK depth] from row r0 and depth d0, into registers:
// thread e's elements are rows (e * LOADS) / kBK.., consecutive depth, so a warp reads whole
// 64-byte runs of each row.
template <class T, bool kVec>
__device__ inline void load_tile(T (&v)[Tile<T>::LOADS], const T* __restrict__ p, std::int64_t ld, std::int64_t rows,
                                 std::int64_t r0, int d0, int k) {
  constexpr int L = Tile<T>::LOADS;
  const int e = threadIdx.x * L;
  const int r = e / kBK, dd = e % kBK;  // L divides kBK: one thread's run stays in one row
  const std::int64_t gr = r0 + r;
  const T* src = p + gr * ld + d0 + dd;
  if (kVec && gr < rows && d0 + dd + L <= k) {  // whole run in range: 16-byte loads
    constexpr int V = 16 / sizeof(T);
#pragma unroll
    for (int i = 0; i < L; i += V) {
      if constexpr (sizeof(T) == 4) {
        const float4 q = *reinterpret_cast<const float4*>(src + i);
        v[i] = q.x, v[i + 1] = q.y, v[i + 2] = q.z, v[i + 3] = q.w;
      } else {
        const double2 q = *reinterpret_cast<const double2*>(src + i);
        v[i] = q.x, v[i + 1] = q.y;
      }
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < L; ++i) v[i] = (gr < rows && d0 + dd + i < k) ? src[i] : T(0);
}

template <class T>
__device__ inline void store_tile(T (*s)[Tile<T>::BM + 4], const T (&v)[Tile<T>::LOADS]) {
  constexpr int L = Tile<T>::LOADS;
  const int e = threadIdx.x * L;
  const int r = e / kBK, dd = e % kBK;
#pragma unroll
  for (int i = 0; i < L; ++i) s[dd + i][r] = v[i];
}

template <class T, bool kFused, bool kVec>
__global__ void __launch_bounds__(kThreads, 2)
    gemm_nt_kernel(T* __restrict__ out, std::int64_t ldo, const T* __restrict__ a, std::int64_t lda,
                   const T* __restrict__ w, std::int64_t ldw, std::int64_t n, int m, int k, bool round_bf16) {
  using TL = Tile<T>;
  constexpr int BM = TL::BM, TM = TL::TM, Q = TL::Q, L = TL::LOADS;
  __shared__ __align__(16) T as[2][kBK][BM + 4];
  __shared__ __align__(16) T ws[2][kBK][BM + 4];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.y) * BM;
  const std::int64_t col0 = static_cast<std::int64_t>(blockIdx.x) * BM;

  T acc[TM][TM];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TM; ++j) acc[i][j] = T(0);

  T va[L], vw[L];
  load_tile<T, kVec>(va, a, lda, n, row0, 0, k);
  load_tile<T, kVec>(vw, w, ldw, m, col0, 0, k);
  store_tile<T>(as[0], va);
  store_tile<T>(ws[0], vw);
  __syncthreads();
  const int tiles = (k + kBK - 1) / kBK;
  for (int t = 0; t < tiles; ++t) {
    const int cur = t & 1;
    if (t + 1 < tiles) {
      load_tile<T, kVec>(va, a, lda, n, row0, (t + 1) * kBK, k);
      load_tile<T, kVec>(vw, w, ldw, m, col0, (t + 1) * kBK, k);
    }
#pragma unroll
    for (int dd = 0; dd < kBK; ++dd) {
      T av[TM], wv[TM];
#pragma unroll
      for (int q = 0; q < Q; ++q) {
        av[q] = as[cur][dd][ty * Q + q];
        av[Q + q] = as[cur][dd][BM / 2 + ty * Q + q];
        wv[q] = ws[cur][dd][tx * Q + q];
        wv[Q + q] = ws[cur][dd][BM / 2 + tx * Q + q];
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TM; ++j) acc[i][j] = mac<T, kFused>(acc[i][j], av[i], wv[j]);
    }
    if (t + 1 < tiles) {
      store_tile<T>(as[cur ^ 1], va);
      store_tile<T>(ws[cur ^ 1], vw);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const std::int64_t r = row0 + (i < Q ? ty * Q + i : BM / 2 + ty * Q + i - Q);
    if (r >= n) continue;
#pragma unroll
    for (int j = 0; j < TM; ++j) {
      const std::int64_t o = col0 + (j < Q ? tx * Q + j : BM / 2 + tx * Q + j - Q);
      if (o >= m) continue;
      T v = acc[i][j];
      if (round_bf16) v = static_cast<T>(hd::round_bf16(static_cast<float>(v)));
      out[r * ldo + o] = v;
    }
  }
}

template <class T>
void launch(T* out, std::int64_t ldo, const T* a, std::int64_t lda, const T* w, std::int64_t ldw, std::int64_t n,
            int m, int k, bool fused, bool round_bf16, hipStream_t stream) {
  constexpr int BM = Tile<T>::BM;
  const dim3 grid((m + BM - 1) / BM, static_cast<unsigned>((n + BM - 1) / BM));
  // 16-byte loads need 16-byte aligned rows: both leading dimensions and bases.
  constexpr int V = 16 / sizeof(T);
  const bool vec = lda % V == 0 && ldw % V == 0 && reinterpret_cast<std::uintptr_t>(a) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(w) % 16 == 0;
  const auto args = [&](auto kernel) {
    kernel<<<grid, kThreads, 0, stream>>>(out, ldo, a, lda, w, ldw, n, m, k, round_bf16);
  };
  if (fused)
    vec ? args(gemm_nt_kernel<T, true, true>) : args(gemm_nt_kernel<T, true, false>);
  else
    vec ? args(gemm_nt_kernel<T, false, true>) : args(gemm_nt_kernel<T, false, false>);
  MOESIM_GPU_CHECK_LAUNCH();
}

}  // namespace

template <>
void gemm_nt<float>(float* out, std::int64_t ldo, const float* a, std::int64_t lda, const float* w, std::int64_t ldw,
                    std::int64_t n, int m, int k, bool fused, bool round_bf16, hipStream_t stream) {
  if (n <= 0 || m <= 0) return;
  launch<float>(out, ldo, a, lda, w, ldw, n, m, k, fused, round_bf16, stream);
}

template <>
void gemm_nt<double>(double* out, std::int64_t ldo, const double* a, std::int64_t lda, const double* w,
                     std::int64_t ldw, std::int64_t n, int m, int k, bool fused, bool round_bf16, hipStream_t stream) {
  if (n <= 0 || m <= 0) return;
  launch<double>(out, ldo, a, lda, w, ldw, n, m, k, fused, round_bf16, stream);
}

}  // namespace moesim::gpu
