#pragma once
// The per-token shared-expert gate of Qwen2-MoE and Qwen3-Next: a token's summed shared-expert
// output is scaled by sigmoid(x . shared_gate) before combine adds it (reference/NUMERICS.md,
// "Shared-expert gate"). The reference and the simulator's combine both apply it through this.
#include <cstdint>
#include <vector>

#include "expert.hpp"
#include "trace.hpp"
#include "weights.hpp"

namespace moesim {

class SharedGate {
 public:
  // `options`: the routed experts' (numerics, token dtype); the gate sees the token as the shared
  // experts do (fp8 mode uses the bf16 pipeline, no router weight on the input). Inactive unless
  // trace.config.shared_expert_gate; the trace and its tokens must outlive it.
  SharedGate(const Trace& trace, int layer_pos, const WeightProvider& weights, const ExpertOptions& options);
  bool active() const { return active_; }
  // shared [H]: the token's summed shared-expert output, scaled in place (nothing when inactive).
  void apply(int rank, std::int64_t token, double* shared) const;
  void apply(int rank, std::int64_t token, float* shared) const;

 private:
  template <class T>
  void apply_typed(int rank, std::int64_t token, T* shared) const;
  const Layer* layer_ = nullptr;
  ExpertOptions options_;
  int hidden_ = 0, blocks_ = 0;
  bool active_ = false;
  std::vector<double> gate_f64_;
  std::vector<float> gate_f32_;
};

}  // namespace moesim
