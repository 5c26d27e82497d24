#pragma once
// The combine primitive: one token's final output from its slots' expert outputs. The simulator
// reuses it so its weighted-combine models reproduce the reference's bits.
//   acc = 0 (accumulation type: float64 exact, float32 otherwise)
//   for k = 0 .. K-1 ascending, skipping slots without an output (id -1):
//     acc = acc + w_k * y_k        (router_weight_on_input: acc = acc + y_k, the weight was
//                                   applied to the expert's input)
//   r = round(acc); if routed_scaling_factor != 1: r = round(r * s)
//   if shared: r = round(r + shared)
// where round is bf16 round-to-nearest-even in bf16/fp8 modes and nothing otherwise.
// hf_bf16 (Hugging Face eager, index_add_ per expert): slots in ascending (id, slot) order when
// ids are given (slot order otherwise), acc = round(acc + round(w_k * y_k)), then as above.
#include <cstdint>

#include "numerics.hpp"

namespace moesim {

struct CombineSpec {
  Numerics numerics = Numerics::exact;
  double routed_scaling_factor = 1.0;  // applied in the accumulation type (float32 except exact)
  bool router_weight_on_input = false;
};

// slot_out[k]: [hidden] expert output of slot k, nullptr for a slot with no expert (-1).
// weights: [top_k]. shared: [hidden] summed shared-expert output, or nullptr. out: [hidden].
// ids: [top_k] the slots' expert ids, read in hf_bf16 only (its order), or nullptr.
void combine_token(const CombineSpec& spec, int hidden, int top_k, const double* const* slot_out,
                   const float* weights, const double* shared, double* out, const std::int32_t* ids = nullptr);
void combine_token(const CombineSpec& spec, int hidden, int top_k, const float* const* slot_out,
                   const float* weights, const float* shared, float* out, const std::int32_t* ids = nullptr);

// Sum of several shared experts' outputs: s = 0 .. S-1 ascending in the accumulation type,
// rounded once to bf16 at the end in bf16/fp8 modes (with S = 1 the output passes unchanged).
void sum_shared(const CombineSpec& spec, int hidden, int num_shared, const double* const* outs, double* out);
void sum_shared(const CombineSpec& spec, int hidden, int num_shared, const float* const* outs, float* out);

}  // namespace moesim
