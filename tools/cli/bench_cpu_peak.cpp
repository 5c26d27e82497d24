// One core's arithmetic limits, measured: loops of independent vector multiply-adds with
// nothing else in them. The AVX2 loops carry their own target attribute (the file is built for
// the baseline) and run only where the CPU has AVX2 and FMA.
#include <time.h>

#include <algorithm>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "bench.hpp"
#include "gemm.hpp"

namespace moesim::cli {
namespace {

double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);  // descheduled time on a shared machine does not count
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// 12 independent accumulators (what the GEMM's micro-kernel keeps), so latency never limits;
// a = a * b + c with b just below 1 converges to c / (1 - b) = 1: no overflow, no subnormals.
constexpr int kAcc = 12;
constexpr float kB = 0.999999f, kC = 1e-6f;

typedef float v4 __attribute__((vector_size(16)));

__attribute__((noinline)) float sse2_muladd(long iters) {
  v4 a[kAcc], b = v4{} + kB, c = v4{} + kC;
  for (auto& x : a) x = c;
  for (long i = 0; i < iters; ++i)
    for (auto& x : a) x = x * b + c;  // -ffp-contract=off: a multiply, then an add
  float s = 0;
  for (auto& x : a) s += x[0];
  return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"), noinline)) float avx2_loop(long iters, bool fused) {
  __m256 a[kAcc];
  const __m256 b = _mm256_set1_ps(kB), c = _mm256_set1_ps(kC);
  for (auto& x : a) x = c;
  if (fused) {
    for (long i = 0; i < iters; ++i)
      for (auto& x : a) x = _mm256_fmadd_ps(x, b, c);
  } else {
    for (long i = 0; i < iters; ++i)
      for (auto& x : a) x = _mm256_add_ps(_mm256_mul_ps(x, b), c);
  }
  float s = 0;
  for (auto& x : a) s += _mm256_cvtss_f32(x);
  return s;
}
#endif

// Best of 5 timed runs of at least 50 ms each; 2 flops per lane per accumulator per iteration.
template <class Loop>
double gflops(int lanes, Loop loop) {
  volatile float sink = 0;
  long iters = 1 << 16;
  double best = 0;
  for (int rep = 0; rep < 5;) {
    const double t0 = cpu_now();
    sink = sink + loop(iters);
    const double t = cpu_now() - t0;
    if (t < 0.05) {
      iters *= 4;
      continue;
    }
    best = std::max(best, 2.0 * kAcc * lanes * static_cast<double>(iters) / t * 1e-9);
    ++rep;
  }
  return best;
}

}  // namespace

CorePeak core_peak() {
  CorePeak p;
  p.sse2_muladd = gflops(4, sse2_muladd);
#if defined(__x86_64__)
  if (gemm::supported(gemm::Isa::avx2)) {
    p.avx2_muladd = gflops(8, [](long n) { return avx2_loop(n, false); });
    p.avx2_fma = gflops(8, [](long n) { return avx2_loop(n, true); });
  }
#endif
  return p;
}

}  // namespace moesim::cli
