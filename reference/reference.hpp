#pragma once
// The CPU reference model: the mathematically intended result of a trace's MoE layer for every
// rank, independent of any dispatch library. For token t of rank r:
//   y_t = scale * sum_k w_tk * FFN_{logical(e_tk)}(x_t) + sum_s SharedFFN_s(x_t)
// (-1 ids contribute nothing; scale and shared experts only when configured; with
// router_weight_on_input FFN sees w_tk * x_t and the sum is unweighted). Rows are gathered per
// logical expert across all ranks and run as one GEMM per expert; threads take whole experts and
// write disjoint outputs, so results are bit-identical for any thread count.
#include <cstdint>
#include <vector>

#include "combine.hpp"
#include "expert.hpp"
#include "expert_backend.hpp"
#include "numerics.hpp"
#include "trace.hpp"
#include "weights.hpp"

namespace moesim {

struct ReferenceOptions {
  Numerics numerics = Numerics::exact;
  DType fp8_format = DType::e4m3;  // fp8 mode, tokens not already fp8
  int threads = 1;
  ExpertBackend* backend = nullptr;  // where the expert FFNs run; nullptr: the CPU reference kernel
};

// One output tensor: f64 holds it in exact mode, f32 (bf16 values in bf16/fp8) otherwise.
struct Values {
  bool wide = true;
  std::vector<double> f64;
  std::vector<float> f32;
  std::size_t size() const { return wide ? f64.size() : f32.size(); }
  double operator[](std::size_t i) const { return wide ? f64[i] : static_cast<double>(f32[i]); }
};

struct RankOutputs {
  std::int64_t num_tokens = 0;
  Values final_out;   // [T, H]
  Values expert_out;  // [T, K, H] slot k's expert output before weighting; zeros for -1 slots
};

struct LayerOutputs {
  int layer_index = 0;
  std::vector<RankOutputs> ranks;
};

// The options every expert of this trace runs with.
ExpertOptions expert_options(const TraceConfig& config, const ReferenceOptions& options);
CombineSpec combine_spec(const TraceConfig& config, Numerics numerics);

// layer_pos: position in trace.layers; every rank's x must be loaded (read_trace does it).
LayerOutputs run_layer(const Trace& trace, int layer_pos, const WeightProvider& weights,
                       const ReferenceOptions& options);
std::vector<LayerOutputs> run_reference(const Trace& trace, const ReferenceOptions& options);

}  // namespace moesim
