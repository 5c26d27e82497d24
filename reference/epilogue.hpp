#pragma once
// GEMM1's epilogue for the common expert, SiLU gated without Hugging Face's per-op rounding, in
// float32: h[i] = rb(fl(fl(g / fl(1 + expf(-g))) * u)) with g = rb(gate[i] + gate_bias[i]) and
// u = rb(up[i] + up_bias[i]), rb() only when `bf16` (reference/NUMERICS.md). The AVX2 build
// (epilogue_avx2.cpp) computes fmath::expf's double operations lane by lane, in the same order,
// so both give the scalar's bits (tests/reference/test_ref_epilogue_isa.cpp); it runs where the
// GEMM kernel does (gemm::active_isa).
#include "gemm.hpp"

namespace moesim::epilogue {

// Biases may be null (no bias); otherwise both are given.
void silu_gated(const float* gate, const float* up, const float* gate_bias, const float* up_bias, int n, bool bf16,
                float* h, gemm::Isa isa = gemm::active_isa());

// fmath::exp of n doubles on `isa`'s lanes: the epilogue's exp over the whole double range, where
// the float results above cannot see scale()'s two steps (subnormal and overflowing doubles).
void exp(const double* x, int n, double* out, gemm::Isa isa = gemm::active_isa());

}  // namespace moesim::epilogue
