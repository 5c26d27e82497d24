#pragma once
// Expert matrices one at a time, from a trace's stored weights or generated from its seed spec,
// so a DeepSeek-V3-sized layer (E=256, H=7168, I=2048) never holds all of its weights at once.
#include <cstdint>
#include <vector>

#include "trace.hpp"

namespace moesim {

// One expert's FFN: w1 [rows1, H] (gated: gate rows [0, I) then up rows [I, 2I); plain: I rows)
// and w2 [H, I], values of the trace's weight dtype held as float.
struct ExpertMatrices {
  int hidden = 0;
  int inter = 0;  // I (routed) or shared_intermediate (shared)
  bool gated = true;
  std::vector<float> w1;
  std::vector<float> w2;
  std::vector<float> b1;  // [rows1] added to GEMM1's output, or empty (no expert biases)
  std::vector<float> b2;  // [H] added to GEMM2's output, or empty
  int rows1() const { return gated ? 2 * inter : inter; }
};

// Hands out the matrices of (layer, logical expert) and of shared experts. Generated weights
// use the trace schema's streams: stream_of(seed, {TensorKind::w1 | w2 | shared_w1 | shared_w2,
// Layer::index, expert}), unit variance times scale / sqrt(fan_in) (fan_in H for w1, I for w2),
// rounded to the weight dtype. Const and thread-safe: each call builds its own copy.
class WeightProvider {
 public:
  explicit WeightProvider(const Trace& trace);

  // layer_pos is the position in trace.layers; logical in [0, placement.num_logical).
  ExpertMatrices routed(int layer_pos, int logical) const;
  // shared in [0, num_shared_experts).
  ExpertMatrices shared(int layer_pos, int shared) const;
  // The same into `out`, reusing its storage (fresh pages are slow to fault in).
  void routed(int layer_pos, int logical, ExpertMatrices& out) const;
  void shared(int layer_pos, int shared, ExpertMatrices& out) const;
  // The layer's shared-expert gate vector [H] (config.shared_expert_gate; stored weights only).
  const std::vector<float>& shared_gate(int layer_pos) const;

 private:
  void make(int layer_pos, int expert, bool shared, ExpertMatrices& out) const;
  const Trace& trace_;
};

}  // namespace moesim
