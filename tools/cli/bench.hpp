#pragma once
// Cases of `moesim bench` that live in their own files.
#include "options.hpp"

namespace moesim::cli {

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

}  // namespace moesim::cli
