#include "shared_gate.hpp"

#include "activation.hpp"  // moesim's exp (traces/fmath.hpp), shared with the GPU kernels
#include "error.hpp"

namespace moesim {
namespace {


template <class T>
inline T maybe_bf16(T v, bool round) {
  return round ? static_cast<T>(round_bf16(static_cast<float>(v))) : v;
}

}  // namespace

SharedGate::SharedGate(const Trace& trace, int layer_pos, const WeightProvider& weights, const ExpertOptions& options)
    : options_(options) {
  const TraceConfig& c = trace.config;
  active_ = c.shared_expert_gate && c.num_shared_experts > 0;
  if (!active_) return;
  layer_ = &trace.layers.at(layer_pos);
  hidden_ = c.hidden;
  blocks_ = c.scales_per_token();
  if (options_.numerics == Numerics::fp8) options_.numerics = Numerics::bf16;  // as the shared experts run
  const std::vector<float>& g = weights.shared_gate(layer_pos);
  const bool rnd = rounds_bf16(options_.numerics);
  if (is_f64(options_.numerics)) gate_f64_.assign(g.begin(), g.end());
  else for (float v : g) gate_f32_.push_back(rnd ? round_bf16(v) : v);
}

template <class T>
void SharedGate::apply_typed(int rank, std::int64_t token, T* shared) const {
  if (!active_) return;
  const RankInput& in = layer_->ranks.at(rank);
  if (token < 0 || token >= in.num_tokens) throw Error("shared gate: token out of range");
  TokenRows row;
  row.x = in.x.data() + token * hidden_;
  row.scales = is_fp8(options_.token_dtype) ? in.x_scales.data() + token * blocks_ : nullptr;
  row.rows = 1;
  std::vector<T> x(hidden_);
  expert_input_row(row, 0, hidden_, options_, x.data());
  const T* g = nullptr;
  if constexpr (sizeof(T) == 8) g = gate_f64_.data();
  else g = gate_f32_.data();
  const bool rnd = rounds_bf16(options_.numerics);
  T acc = T(0);
  for (int d = 0; d < hidden_; ++d) acc = acc + x[d] * g[d];  // ascending, as every GEMM
  const T z = maybe_bf16(acc, rnd);
  const T s = maybe_bf16(T(1) / (T(1) + detail::act_exp(-z)), rnd);
  for (int c = 0; c < hidden_; ++c) shared[c] = maybe_bf16(s * shared[c], rnd);
}

void SharedGate::apply(int rank, std::int64_t token, double* shared) const { apply_typed(rank, token, shared); }
void SharedGate::apply(int rank, std::int64_t token, float* shared) const { apply_typed(rank, token, shared); }

}  // namespace moesim
