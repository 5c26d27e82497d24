// The reference GEMM kernel for AVX2 with FMA (32-byte vectors), compiled with -mavx2 -mfma for
// this file only and run only where the CPU has both (gemm.cpp decides at run time). Packed
// rows hold each x value once: vbroadcastss/sd reads it from memory.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "gemm.hpp"

namespace moesim::gemm::avx2 {
namespace {

template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int lanes = static_cast<int>(32 / sizeof(T));
  static constexpr int splat = 1;
};

inline Vec<float>::type broadcast(const float* p) { return Vec<float>::type(_mm256_broadcast_ss(p)); }
inline Vec<double>::type broadcast(const double* p) { return Vec<double>::type(_mm256_broadcast_sd(p)); }

// Fused only where both operands are bf16 values (the caller says so): their product is exact in
// float, so fma(b, w, acc) rounds once where acc + b*w rounds the exact product again, to the
// same bits (reference/NUMERICS.md).
template <class T, bool fused>
inline typename Vec<T>::type madd(typename Vec<T>::type acc, typename Vec<T>::type b, typename Vec<T>::type w) {
  if constexpr (fused && sizeof(T) == 4) {
    return Vec<float>::type(_mm256_fmadd_ps(__m256(b), __m256(w), __m256(acc)));
  } else {
    return acc + b * w;
  }
}

// Prefetches spread over the depth steps (gemm_kernel.hpp's struct Ahead): one more
// instruction in a step of 22.
constexpr bool kAheadInLoop = true;

}  // namespace

#define MOESIM_GEMM_ISA avx2
#include "gemm_kernel.hpp"

}  // namespace moesim::gemm::avx2
