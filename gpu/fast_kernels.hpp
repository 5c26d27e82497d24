#pragma once
// The fast mode's element-wise and data-movement kernels (reference/NUMERICS.md, "Fast mode"):
// bf16 values travel as their bit patterns (uint16), rows move in 16-byte accesses where the
// row length allows, and every kernel makes one pass over its bytes. Launchers take raw device
// pointers; gpu/fast_layer.hip checks shapes and allocates.
#include <cstdint>

#include "trace.hpp"
#include "vendor.hpp"

namespace moesim::gpu {

// dst[i] = bits of rb(src[i]).
void to_bf16(std::uint16_t* dst, const float* src, std::int64_t count, hipStream_t stream);
// dst[i] = float(src[i]).
void from_bf16(float* dst, const std::uint16_t* src, std::int64_t count, hipStream_t stream);

// Dispatch: dst row j = src row src_row[j], rows of `hidden` bf16 values.
void gather_rows(std::uint16_t* dst, const std::uint16_t* src, const std::int64_t* src_row, std::int64_t rows,
                 int hidden, hipStream_t stream);

// h[r][i] = rb(fl(act(g[r][i]) * g[r][inter + i])) (gated) or rb(act(g[r][i])): g [n, ldg], h [n, inter].
void activate_bf16(std::uint16_t* h, const std::uint16_t* g, std::int64_t ldg, std::int64_t n, int inter,
                   Activation act, hipStream_t stream);

// What combine adds after the routed sum (reference/combine.hpp's steps, in float32).
struct FastCombineSpec {
  int hidden = 0, top_k = 0;
  float scale = 1.0f;         // routed_scaling_factor; 1 skips the step
  int num_shared = 0;         // shared outputs [num_shared][tokens, hidden], summed then added
  const std::uint16_t* shared = nullptr;
};

// Ordered combine: per token, acc = fl(acc + fl(w_k * y_k)) over k ascending, skipping slots
// whose slot_row is -1; then rb, scale, shared as combine_token does. out [tokens, hidden] float.
void combine_ordered(float* out, const std::uint16_t* y, const std::int64_t* slot_row, const float* weights,
                     std::int64_t tokens, const FastCombineSpec& spec, hipStream_t stream);

// Atomic combine, as kernels that accumulate with atomics do: acc[t] += fl(w_tk * y_k) for every
// slot with a row, one block per (token, slot) so a token's slots run on different multiprocessors
// at once and add in whatever order the hardware gives (acc must start at 0); then
// combine_finish applies rb, scale and shared to acc.
void combine_atomic(float* acc, const std::uint16_t* y, const std::int64_t* slot_row, const float* weights,
                    std::int64_t tokens, int hidden, int top_k, hipStream_t stream);
void combine_finish(float* out, const float* acc, std::int64_t tokens, const FastCombineSpec& spec,
                    hipStream_t stream);

}  // namespace moesim::gpu
