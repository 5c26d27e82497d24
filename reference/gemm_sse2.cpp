// The reference GEMM kernel for the baseline x86-64 instruction set (SSE2, 16-byte vectors):
// SSE2 has no broadcast from memory, so packed rows hold each x value splatted across a vector.
#include <cstddef>
#include <cstdint>

#include "gemm.hpp"

namespace moesim::gemm::sse2 {
namespace {

template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(16)));
  static constexpr int lanes = static_cast<int>(16 / sizeof(T));
  static constexpr int splat = lanes;
};

template <class T>
inline typename Vec<T>::type broadcast(const T* p) {
  typename Vec<T>::type v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// SSE2 has no fused multiply-add; the unfused form gives the same bits where fusing is allowed.
template <class T, bool fused>
inline typename Vec<T>::type madd(typename Vec<T>::type acc, typename Vec<T>::type b, typename Vec<T>::type w) {
  return acc + b * w;
}

// Prefetches in one burst before each micro-kernel call: its depth step is about 50 instructions
// (two-operand arithmetic, a weight vector reloaded for want of registers) and bound by how
// many the core can issue: a prefetch in every step measured slower on Zen 4 (cache-resident).
constexpr bool kAheadInLoop = false;

}  // namespace

#define MOESIM_GEMM_ISA sse2
#include "gemm_kernel.hpp"

}  // namespace moesim::gemm::sse2
