#pragma once
// Cases of `moesim bench` that live in their own files.
#include <string>
#include <vector>

#include <sys/resource.h>

#include <chrono>

#include "options.hpp"

namespace moesim::cli {

// The process's peak resident memory so far, in GiB (ru_maxrss is KiB on Linux).
inline double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);
}

// Wall seconds fn() takes.
template <class F>
double timed(F fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Routing-only statistics at scale against a floor pass that only reads every id.
int bench_routing(const po::variables_map& vm);

// moesim diff on two 256 MiB float32 datasets against a plain read of them and h5diff (bench_diff.cpp).
int bench_diff(const po::variables_map& vm);

// moesim diagnose on a seed-scale capture built in memory from a simulated run (bench_diagnose.cpp).
int bench_diagnose(const po::variables_map& vm);

// The GPU backend against the device's FMA peak and the CPU reference (bench_gpu.cpp).
int bench_gpu(const po::variables_map& vm);

// One core's measured fp32 arithmetic peaks in GFLOP/s of thread CPU time (0 where the CPU lacks
// the instructions): SSE2 and AVX2 multiply-then-add, and AVX2 fused multiply-add.
struct CorePeak {
  double sse2_muladd = 0, avx2_muladd = 0, avx2_fma = 0;
};
CorePeak core_peak();

// OpenBLAS (bench_blas.cpp): whether this build has it, and the core its kernels were picked for.
bool have_openblas();
std::string openblas_core();

// The reference bench's two fp32 GEMMs per expert (OpenBLAS has no bf16 GEMM on AVX2), one thread:
// g[n, 2I] = x w1^T, then out[n, H] = g w2^T, with constant weights (speed does not depend on them).
struct BlasGemms {
  BlasGemms(int hidden, int inter, int rows);
  void run(const float* x, int experts);  // x: [rows, hidden]; nothing when OpenBLAS is absent
  int H, I, n;
  std::vector<float> w1, w2, g, out;
};

// `moesim bench blas` run as a child with OPENBLAS_CORETYPE=coretype (an OpenBLAS core name such
// as Haswell): the core it loaded and its GFLOP/s per CPU second, best of `reps`.
struct BlasChild {
  std::string core;
  double gflops = 0;
};
void check_core_name(const std::string& coretype);  // throws unless letters and digits
BlasChild openblas_in_child(const std::string& coretype, int H, int I, int n, int experts, int reps);

}  // namespace moesim::cli
