#pragma once
// Small traces built in memory for the reference tests, and an independent naive-loop model of
// the documented numerics (reference/NUMERICS.md) to hold the reference to.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../../reference/reference.hpp"
#include "expert_weights.hpp"
#include "fmath.hpp"
#include "random.hpp"

namespace moesim::testing {

struct TraceShape {
  int ranks = 2, experts = 8, top_k = 3, hidden = 40, inter = 24, tokens = 7;
  Activation act = Activation::silu_gated;
  DType token_dtype = DType::f32;
  int shared = 0, shared_inter = 16;
  double scaling = 1.0;
  bool on_input = false;
  bool stored_weights = true;
  std::uint64_t seed = 11;
  bool bias = false;             // expert biases (GPT-OSS)
  bool shared_gate = false;      // per-token shared-expert gate (Qwen2-MoE)
  bool include_scaling = false;  // topk_weights already hold routed_scaling_factor (DeepSeek-V3)
  double swiglu_limit = 0.6;     // swiglu_oai: small, so the clamps bite on these unit-scale rows
};

// x values encode their origin: rank, token and column shift a seeded random value.
inline Trace make_trace(const TraceShape& s) {
  Trace t;
  TraceConfig& c = t.config;
  c.num_ranks = s.ranks;
  c.num_experts = s.experts;
  c.top_k = s.top_k;
  c.hidden = s.hidden;
  c.intermediate = s.inter;
  c.activation = s.act;
  c.token_dtype = s.token_dtype;
  c.weight_dtype = DType::f32;
  c.placement = contiguous_placement(s.experts, s.ranks);
  c.num_shared_experts = s.shared;
  c.shared_intermediate = s.shared ? s.shared_inter : 0;
  c.routed_scaling_factor = s.scaling;
  c.router_weight_on_input = s.on_input;
  c.expert_bias = s.bias;
  c.shared_expert_gate = s.shared_gate;
  c.topk_weights_include_scaling = s.include_scaling;
  c.swiglu_limit = s.swiglu_limit;
  t.weight_spec.seed = s.seed;
  t.weight_spec.scale = 1.0;
  t.path = "mem.h5";
  Layer layer;
  layer.index = 0;
  const auto stream = stream_of(s.seed, {99});
  std::uint64_t ctr = 0;
  for (int r = 0; r < s.ranks; ++r) {
    RankInput in;
    in.num_tokens = s.tokens + r;  // ranks differ in size
    for (std::int64_t tok = 0; tok < in.num_tokens; ++tok) {
      for (int h = 0; h < s.hidden; ++h) {
        float v = static_cast<float>(2.0 * uniform01(stream, ctr++) - 1.0 + 0.01 * r + 0.001 * tok);
        in.x.push_back(s.token_dtype == DType::bf16 ? round_bf16(v) : v);
      }
      for (int k = 0; k < s.top_k; ++k) {
        in.topk_ids.push_back(static_cast<std::int32_t>((tok * 3 + k * 5 + r) % s.experts));
        in.topk_weights.push_back(static_cast<float>(0.1 + uniform01(stream, ctr++)));
      }
    }
    layer.ranks.push_back(std::move(in));
  }
  if (s.stored_weights) {
    ExpertWeights w;
    const int g = is_gated(s.act) ? 2 : 1;
    auto fill = [&](std::vector<float>& v, std::size_t n, double sd) {
      v.resize(n);
      fill_generated(v.data(), n, t.weight_spec, stream_of(s.seed, {1000 + ctr++}), sd, DType::f32);
    };
    fill(w.w1, std::size_t(s.experts) * g * s.inter * s.hidden, 1 / std::sqrt(double(s.hidden)));
    fill(w.w2, std::size_t(s.experts) * s.hidden * s.inter, 1 / std::sqrt(double(s.inter)));
    fill(w.shared_w1, std::size_t(s.shared) * g * s.shared_inter * s.hidden, 1 / std::sqrt(double(s.hidden)));
    fill(w.shared_w2, std::size_t(s.shared) * s.hidden * s.shared_inter, 1 / std::sqrt(double(s.shared_inter)));
    if (s.bias) {  // gate rows' biases positive, up rows' negative, all shifted by expert and row
      auto bias = [&](std::vector<float>& v, int n, int rows, int half) {
        for (int e = 0; e < n; ++e)
          for (int i = 0; i < rows; ++i)
            v.push_back(static_cast<float>((half && i >= half ? -0.3 : 0.3) + 0.01 * e + 0.001 * i));
      };
      bias(w.b1, s.experts, g * s.inter, g == 2 ? s.inter : 0);
      bias(w.b2, s.experts, s.hidden, 0);
      bias(w.shared_b1, s.shared, g * s.shared_inter, g == 2 ? s.shared_inter : 0);
      bias(w.shared_b2, s.shared, s.hidden, 0);
    }
    if (s.shared_gate) fill(w.shared_gate, std::size_t(s.hidden), 2 / std::sqrt(double(s.hidden)));
    layer.weights = std::move(w);
  }
  t.layers.push_back(std::move(layer));
  return t;
}

// ---- the naive model: plain loops, written from NUMERICS.md, not from the reference's code ----

// moesim's exp, erf and tanh (traces/fmath.hpp); float versions in float.
template <class T>
T naive_act(Activation a, T x) {
  constexpr bool f32 = sizeof(T) == 4;
  const auto exp = [](T v) -> T { if constexpr (f32) return fmath::expf(v); else return fmath::exp(v); };
  const auto erf = [](T v) -> T { if constexpr (f32) return fmath::erff(v); else return fmath::erf(v); };
  const auto tanh = [](T v) -> T { if constexpr (f32) return fmath::tanhf(v); else return fmath::tanh(v); };
  switch (a) {
    case Activation::silu_gated:
    case Activation::silu: return x / (T(1) + exp(-x));
    case Activation::gelu_erf_gated:
    case Activation::gelu_erf: return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752440)));
    default: return T(0.5) * x * (T(1) + tanh(T(0.79788456080286535588) * (x + T(0.044715) * x * x * x)));
  }
}

// An expert's matrices straight from the trace (stored slice, or traces/expert_weights.hpp generator),
// not through the reference's WeightProvider.
inline ExpertMatrices naive_matrices(const Trace& t, int expert, bool shared) {
  const TraceConfig& c = t.config;
  ExpertMatrices m;
  m.hidden = c.hidden;
  m.inter = shared ? c.shared_intermediate : c.intermediate;
  m.gated = is_gated(c.activation);
  const std::size_t n1 = std::size_t(m.rows1()) * m.hidden, n2 = std::size_t(m.hidden) * m.inter;
  m.w1.resize(n1);
  m.w2.resize(n2);
  const Layer& l = t.layers[0];
  if (l.weights) {
    const auto& w1 = shared ? l.weights->shared_w1 : l.weights->w1;
    const auto& w2 = shared ? l.weights->shared_w2 : l.weights->w2;
    std::copy_n(w1.begin() + expert * n1, n1, m.w1.begin());
    std::copy_n(w2.begin() + expert * n2, n2, m.w2.begin());
    if (c.expert_bias) {
      const auto& b1 = shared ? l.weights->shared_b1 : l.weights->b1;
      const auto& b2 = shared ? l.weights->shared_b2 : l.weights->b2;
      m.b1.assign(b1.begin() + expert * m.rows1(), b1.begin() + (expert + 1) * m.rows1());
      m.b2.assign(b2.begin() + expert * m.hidden, b2.begin() + (expert + 1) * m.hidden);
    }
  } else {
    generate_expert(c, t.weight_spec, l.index, expert, shared, m.w1.data(), m.w2.data());
  }
  return m;
}

// GPT-OSS's clamped SwiGLU as NUMERICS.md writes it.
template <class T>
T naive_swiglu_oai(T gate, T up, T alpha, T limit) {
  if (gate > limit) gate = limit;
  if (up > limit) up = limit;
  if (up < -limit) up = -limit;
  T e;
  if constexpr (sizeof(T) == 4) e = fmath::expf(-(gate * alpha));
  else e = fmath::exp(-(gate * alpha));
  return (up + T(1)) * (gate * (T(1) / (T(1) + e)));
}

// T = double for exact, float for fp32 (rnd false) and bf16 (rnd true). a: the expert's input.
template <class T>
std::vector<T> naive_ffn(const ExpertMatrices& m, Activation act, const std::vector<T>& a, bool rnd,
                         double alpha = 1.702, double limit = 7.0) {
  auto rb = [&](T v) { return rnd ? T(round_bf16(float(v))) : v; };
  const int H = m.hidden, I = m.inter;
  const bool bias = !m.b1.empty();
  std::vector<T> g(m.rows1());
  for (int i = 0; i < m.rows1(); ++i) {
    T acc = 0;
    for (int c = 0; c < H; ++c) acc = acc + a[c] * rb(T(m.w1[std::size_t(i) * H + c]));
    g[i] = rb(bias ? acc + rb(T(m.b1[i])) : acc);
  }
  std::vector<T> h(I), y(H);
  for (int i = 0; i < I; ++i)
    h[i] = rb(act == Activation::swiglu_oai ? naive_swiglu_oai(g[i], g[I + i], T(alpha), T(limit))
              : m.gated                     ? naive_act(act, g[i]) * g[I + i]
                                            : naive_act(act, g[i]));
  for (int j = 0; j < H; ++j) {
    T acc = 0;
    for (int i = 0; i < I; ++i) acc = acc + h[i] * rb(T(m.w2[std::size_t(j) * I + i]));
    y[j] = rb(bias ? acc + rb(T(m.b2[j])) : acc);
  }
  return y;
}

// The final output of every token of rank r, [T, H]; no fp8 (the fp8 tests check the input row).
template <class T>
std::vector<T> naive_final(const Trace& t, int r, bool rnd, std::vector<T>* expert_out = nullptr) {
  const TraceConfig& c = t.config;
  const RankInput& in = t.layers[0].ranks[r];
  auto rb = [&](T v) { return rnd ? T(round_bf16(float(v))) : v; };
  const int H = c.hidden, K = c.top_k;
  std::vector<T> out(std::size_t(in.num_tokens) * H);
  if (expert_out) expert_out->assign(std::size_t(in.num_tokens) * K * H, T(0));
  for (std::int64_t tok = 0; tok < in.num_tokens; ++tok) {
    std::vector<T> x(H), acc(H, T(0));
    for (int h = 0; h < H; ++h) x[h] = rb(T(in.x[tok * H + h]));
    for (int k = 0; k < K; ++k) {
      const int id = in.topk_ids[tok * K + k];
      if (id < 0) continue;
      const T w = T(in.topk_weights[tok * K + k]);
      std::vector<T> a = x;
      if (c.router_weight_on_input)
        for (int h = 0; h < H; ++h) a[h] = rb(w * T(in.x[tok * H + h]));
      const auto y = naive_ffn<T>(naive_matrices(t, c.logical_of(id), false), c.activation, a, rnd, c.swiglu_alpha,
                                  c.swiglu_limit);
      for (int h = 0; h < H; ++h) acc[h] = c.router_weight_on_input ? acc[h] + y[h] : acc[h] + w * y[h];
      if (expert_out) std::copy(y.begin(), y.end(), expert_out->begin() + (tok * K + k) * H);
    }
    std::vector<T> sh(H, T(0));
    for (int s = 0; s < c.num_shared_experts; ++s) {
      const auto y = naive_ffn<T>(naive_matrices(t, s, true), c.activation, x, rnd, c.swiglu_alpha, c.swiglu_limit);
      for (int h = 0; h < H; ++h) sh[h] = sh[h] + y[h];
    }
    T gate = T(1);  // sigmoid(x . shared_gate), x as the shared experts see it
    if (c.shared_expert_gate) {
      T z = 0;
      for (int h = 0; h < H; ++h) z = z + x[h] * rb(T(t.layers[0].weights->shared_gate[h]));
      z = rb(z);
      if constexpr (sizeof(T) == 4) gate = rb(T(1) / (T(1) + fmath::expf(-z)));
      else gate = rb(T(1) / (T(1) + fmath::exp(-z)));
    }
    const bool scale = c.routed_scaling_factor != 1.0 && !c.topk_weights_include_scaling;
    for (int h = 0; h < H; ++h) {
      T v = rb(acc[h]);
      if (scale) v = rb(v * T(c.routed_scaling_factor));
      if (c.num_shared_experts > 0) v = rb(v + (c.shared_expert_gate ? rb(gate * rb(sh[h])) : rb(sh[h])));
      out[tok * H + h] = v;
    }
  }
  return out;
}

}  // namespace moesim::testing
