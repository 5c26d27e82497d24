#include "expert_weights.hpp"

#include <cmath>

#include "random.hpp"

namespace moesim {

ExpertStreams expert_streams(const TraceConfig& c, const GeneratorSpec& spec, int layer, int expert, bool shared) {
  const std::size_t H = static_cast<std::size_t>(c.hidden);
  const std::size_t I = static_cast<std::size_t>(shared ? c.shared_intermediate : c.intermediate);
  const std::size_t rows1 = is_gated(c.activation) ? 2 * I : I;
  const auto k1 = static_cast<std::uint64_t>(shared ? TensorKind::shared_w1 : TensorKind::w1);
  const auto k2 = static_cast<std::uint64_t>(shared ? TensorKind::shared_w2 : TensorKind::w2);
  const auto l = static_cast<std::uint64_t>(layer), e = static_cast<std::uint64_t>(expert);
  ExpertStreams s;
  s.w1 = {stream_of(spec.seed, {k1, l, e}), spec.scale / std::sqrt(double(H)), rows1 * H};
  s.w2 = {stream_of(spec.seed, {k2, l, e}), spec.scale / std::sqrt(double(I)), H * I};
  return s;
}

void generate_expert(const TraceConfig& c, const GeneratorSpec& spec, int layer, int expert, bool shared, float* w1,
                     float* w2) {
  const ExpertStreams s = expert_streams(c, spec, layer, expert, shared);
  fill_generated(w1, s.w1.count, spec, s.w1.stream, s.w1.stddev, c.weight_dtype);
  fill_generated(w2, s.w2.count, spec, s.w2.stream, s.w2.stddev, c.weight_dtype);
}

ExpertWeights generate_weights(const TraceConfig& c, const GeneratorSpec& spec, int layer) {
  ExpertWeights w;
  const std::size_t H = static_cast<std::size_t>(c.hidden);
  const std::size_t g = is_gated(c.activation) ? 2 : 1;
  const std::size_t I = static_cast<std::size_t>(c.intermediate);
  const std::size_t L = static_cast<std::size_t>(c.placement.num_logical);
  w.w1.resize(L * g * I * H);
  w.w2.resize(L * H * I);
  for (std::size_t e = 0; e < L; ++e)
    generate_expert(c, spec, layer, static_cast<int>(e), false, w.w1.data() + e * g * I * H, w.w2.data() + e * H * I);
  const std::size_t S = static_cast<std::size_t>(c.num_shared_experts);
  const std::size_t Is = static_cast<std::size_t>(c.shared_intermediate);
  w.shared_w1.resize(S * g * Is * H);
  w.shared_w2.resize(S * H * Is);
  for (std::size_t s = 0; s < S; ++s)
    generate_expert(c, spec, layer, static_cast<int>(s), true, w.shared_w1.data() + s * g * Is * H,
                    w.shared_w2.data() + s * H * Is);
  return w;
}

}  // namespace moesim
