#pragma once
// Device-side measurements for `moesim bench gpu`: the hardware's limits measured in the same
// run (an FMA-bound kernel's rate) beside the deterministic GEMM's. Plain C++ for the CLI.
#include <cstddef>
#include <cstdint>

namespace moesim::gpu {

// TFLOP/s (2 FLOPs per fused multiply-add) of a kernel that does nothing but independent FMA
// chains in float (double when f64), on the whole device: the core's peak as this GPU runs it.
double fma_peak_tflops(bool f64);

// TFLOP/s (2 FLOPs per multiply-add) of gemm_nt on [n, k] x [m, k] random operands: median of
// `reps` timed launches after a warm-up. fused: the bf16 path; else the contract's rounded
// product then rounded sum. f64: exact mode's double GEMM.
double gemm_tflops(std::int64_t n, int m, int k, bool fused, bool f64, int reps);

// TB/s of a plain device-to-device copy of `bytes` (read + written, the way dispatch and combine
// bandwidths are counted): the memory's limit as this GPU runs it.
double copy_tb_per_s(std::size_t bytes, int reps);

// TFLOP/s of one vendor-BLAS bf16 GEMM [n, k] x [m, k]^T (fp32 accumulation): what the fast
// mode's grouped GEMMs are held against. Throws where the build has no vendor BLAS.
double blas_gemm_tflops(std::int64_t n, int m, int k, int reps);
// The same for the fast mode's block-scaled fp8 GEMM (gpu/blas.hpp), e4m3 operands.
double blas_fp8_gemm_tflops(std::int64_t n, int m, int k, int reps);

}  // namespace moesim::gpu
