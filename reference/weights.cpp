#include "weights.hpp"

#include <cmath>
#include <string>

#include "error.hpp"
#include "random.hpp"

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
  if (layer.weights) {
    const std::vector<float>& w1 = shared ? layer.weights->shared_w1 : layer.weights->w1;
    const std::vector<float>& w2 = shared ? layer.weights->shared_w2 : layer.weights->w2;
    if (w1.size() < (e + 1) * n1 || w2.size() < (e + 1) * n2)
      throw Error(where(trace_.path, "/layers/" + std::to_string(layer.index) + "/weights") +
                  (shared ? "shared expert " : "expert ") + std::to_string(expert) + " missing from stored weights");
    m.w1.assign(w1.begin() + e * n1, w1.begin() + (e + 1) * n1);
    m.w2.assign(w2.begin() + e * n2, w2.begin() + (e + 1) * n2);
    return;
  }
  // Generated: the trace schema's streams, one per (tensor, layer, expert).
  const GeneratorSpec& spec = trace_.weight_spec;
  const auto k1 = static_cast<std::uint64_t>(shared ? TensorKind::shared_w1 : TensorKind::w1);
  const auto k2 = static_cast<std::uint64_t>(shared ? TensorKind::shared_w2 : TensorKind::w2);
  const auto l = static_cast<std::uint64_t>(layer.index);
  m.w1.resize(n1);
  m.w2.resize(n2);
  fill_generated(m.w1.data(), n1, spec, stream_of(spec.seed, {k1, l, e}), spec.scale / std::sqrt(double(H)),
                 c.weight_dtype);
  fill_generated(m.w2.data(), n2, spec, stream_of(spec.seed, {k2, l, e}), spec.scale / std::sqrt(double(I)),
                 c.weight_dtype);
}

}  // namespace moesim
