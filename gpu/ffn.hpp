#pragma once
// The element-wise steps of one expert's FFN on the device (reference/NUMERICS.md, "The expert
// input row" and "One expert's FFN"); the GEMMs are gemm.hpp. Launchers take raw device
// pointers, sizes and a stream; gpu_backend.hip checks shapes and allocates.
#include <cstdint>

#include "trace.hpp"
#include "vendor.hpp"

namespace moesim::gpu {

// How the input rows are made: the mode's steps 1-4 of expert_input_row.
struct InputRowSpec {
  int hidden = 0;
  int scale_block = 128;
  bool fp8_tokens = false;   // x holds fp8 values, scales one fp32 per 1 x scale_block block
  bool round_bf16 = false;   // bf16/fp8 modes: the router-weighted row is stored as bf16
  bool dispatch_fp8 = false; // fp8 mode: block-quantize the row (skipped for unweighted fp8 tokens)
  bool fnuz = false;         // the fp8 format of that quantization
  bool final_bf16 = false;   // bf16 mode: round the row to bf16 last
};

// a[j] = the input row of token row_index[j] of x ([*, hidden] float, scales [*, nb]).
// input_weights: [n] or nullptr.
template <class T>
void make_input_rows(T* a, const float* x, const float* scales, const std::int64_t* row_index,
                     const float* input_weights, std::int64_t n, const InputRowSpec& spec, hipStream_t stream);

// h[r][i] = act(g[r][i]) (* g[r][I + i] when gated), rounded to bf16 when round_bf16.
// g: [n, ldg] (already rounded by GEMM1's store in bf16 modes), h: [n, inter].
template <class T>
void activate(T* h, const T* g, std::int64_t ldg, std::int64_t n, int inter, Activation act, bool round_bf16,
              hipStream_t stream);

// w[i] = T(round_bf16 ? rb(src[i]) : src[i]): stored weights in the mode's precision.
template <class T>
void convert_weights(T* w, const float* src, std::int64_t count, bool round_bf16, hipStream_t stream);

}  // namespace moesim::gpu
