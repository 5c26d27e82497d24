#include "weights.hpp"

#include <string>

#include "error.hpp"
#include "expert_weights.hpp"

namespace moesim {

WeightProvider::WeightProvider(const Trace& trace) : trace_(trace) {}

ExpertMatrices WeightProvider::routed(int layer_pos, int logical) const {
  ExpertMatrices m;
  routed(layer_pos, logical, m);
  return m;
}

ExpertMatrices WeightProvider::shared(int layer_pos, int shared) const {
  ExpertMatrices m;
  this->shared(layer_pos, shared, m);
  return m;
}

void WeightProvider::routed(int layer_pos, int logical, ExpertMatrices& out) const {
  if (logical < 0 || logical >= trace_.config.placement.num_logical)
    throw Error(where(trace_.path) + "logical expert " + std::to_string(logical) + " out of range [0, " +
                std::to_string(trace_.config.placement.num_logical) + ")");
  make(layer_pos, logical, false, out);
}

void WeightProvider::shared(int layer_pos, int shared, ExpertMatrices& out) const {
  if (shared < 0 || shared >= trace_.config.num_shared_experts)
    throw Error(where(trace_.path) + "shared expert " + std::to_string(shared) + " out of range");
  make(layer_pos, shared, true, out);
}

const std::vector<float>& WeightProvider::shared_gate(int layer_pos) const {
  const Layer& layer = trace_.layers.at(layer_pos);
  if (!layer.weights || layer.weights->shared_gate.size() != static_cast<std::size_t>(trace_.config.hidden))
    throw Error(where(trace_.path, "/layers/" + std::to_string(layer.index) + "/weights/shared_gate") +
                "missing (shared_expert_gate = 1 needs it)");
  return layer.weights->shared_gate;
}

void WeightProvider::make(int layer_pos, int expert, bool shared, ExpertMatrices& m) const {
  const TraceConfig& c = trace_.config;
  if (layer_pos < 0 || layer_pos >= static_cast<int>(trace_.layers.size()))
    throw Error(where(trace_.path) + "layer " + std::to_string(layer_pos) + " out of range");
  const Layer& layer = trace_.layers[layer_pos];
  m.hidden = c.hidden;
  m.inter = shared ? c.shared_intermediate : c.intermediate;
  m.gated = is_gated(c.activation);
  const std::size_t H = static_cast<std::size_t>(m.hidden), I = static_cast<std::size_t>(m.inter);
  const std::size_t n1 = static_cast<std::size_t>(m.rows1()) * H, n2 = H * I;
  const std::size_t e = static_cast<std::size_t>(expert);
  m.b1.clear();
  m.b2.clear();
  if (layer.weights) {
    const std::vector<float>& w1 = shared ? layer.weights->shared_w1 : layer.weights->w1;
    const std::vector<float>& w2 = shared ? layer.weights->shared_w2 : layer.weights->w2;
    if (w1.size() < (e + 1) * n1 || w2.size() < (e + 1) * n2)
      throw Error(where(trace_.path, "/layers/" + std::to_string(layer.index) + "/weights") +
                  (shared ? "shared expert " : "expert ") + std::to_string(expert) + " missing from stored weights");
    m.w1.assign(w1.begin() + e * n1, w1.begin() + (e + 1) * n1);
    m.w2.assign(w2.begin() + e * n2, w2.begin() + (e + 1) * n2);
    if (c.expert_bias) {
      const std::vector<float>& b1 = shared ? layer.weights->shared_b1 : layer.weights->b1;
      const std::vector<float>& b2 = shared ? layer.weights->shared_b2 : layer.weights->b2;
      const std::size_t r1 = static_cast<std::size_t>(m.rows1());
      if (b1.size() < (e + 1) * r1 || b2.size() < (e + 1) * H)
        throw Error(where(trace_.path, "/layers/" + std::to_string(layer.index) + "/weights") +
                    (shared ? "shared expert " : "expert ") + std::to_string(expert) + " missing from stored biases");
      m.b1.assign(b1.begin() + e * r1, b1.begin() + (e + 1) * r1);
      m.b2.assign(b2.begin() + e * H, b2.begin() + (e + 1) * H);
    }
    return;
  }
  // The reader refuses biases without stored weights; a trace built in memory might not.
  if (c.expert_bias) throw Error(where(trace_.path) + "expert biases need stored weights");
  // Generated: the same streams `moesim gen` stores weights from (traces/expert_weights.hpp).
  m.w1.resize(n1);
  m.w2.resize(n2);
  generate_expert(c, trace_.weight_spec, layer.index, expert, shared, m.w1.data(), m.w2.data());
}

}  // namespace moesim
