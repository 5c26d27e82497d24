// numerics hf-bf16: Hugging Face transformers' eager bf16 MoE block (the Mixtral-style experts
// loop: per expert in ascending id, F.linear, act(gate) * up, F.linear, * weight, index_add_ into
// a bf16 output) written here as plain loops from reference/NUMERICS.md, against run_layer.
#include <doctest/doctest.h>

#include <algorithm>

#include "ref_fixtures.hpp"

using namespace moesim;
using namespace moesim::testing;

namespace {

float rb(float v) { return round_bf16(v); }

// One rank's final_out as transformers' eager path computes it in bf16.
std::vector<float> hf_eager(const Trace& tr, int rank) {
  const TraceConfig& c = tr.config;
  const ExpertWeights& w = *tr.layers[0].weights;
  const RankInput& in = tr.layers[0].ranks[rank];
  const int H = c.hidden, I = c.intermediate, K = c.top_k;
  std::vector<float> out(in.num_tokens * H, 0.0f), g(2 * I), h(I);
  for (std::int64_t t = 0; t < in.num_tokens; ++t) {
    float* acc = &out[t * H];
    for (int e = 0; e < c.num_experts; ++e)      // expert_hit, ascending
      for (int k = 0; k < K; ++k) {              // torch.where(expert_mask[e]): slots ascending
        if (in.topk_ids[t * K + k] != e) continue;
        const float* x = &in.x[t * H];
        for (int i = 0; i < 2 * I; ++i) {  // gate_up = F.linear(x, w1[e]) in bf16, then + bias
          float s = 0;
          for (int d = 0; d < H; ++d) s = s + rb(x[d]) * rb(w.w1[(std::size_t(e) * 2 * I + i) * H + d]);
          g[i] = rb(s);
          if (c.expert_bias) g[i] = rb(g[i] + rb(w.b1[std::size_t(e) * 2 * I + i]));
        }
        for (int i = 0; i < I; ++i) {
          if (c.activation == Activation::swiglu_oai) {  // GptOssExperts, one bf16 op at a time
            const float limit = static_cast<float>(c.swiglu_limit), alpha = static_cast<float>(c.swiglu_alpha);
            const float gate = std::min(g[i], limit), up = std::max(std::min(g[I + i], limit), -limit);
            const float sig = rb(1.0f / (1.0f + fmath::expf(-rb(gate * alpha))));
            h[i] = rb(rb(up + 1.0f) * rb(gate * sig));
          } else {
            const float a = rb(g[i] / (1.0f + fmath::expf(-g[i])));  // F.silu(gate)
            h[i] = rb(a * g[I + i]);                                // * up
          }
        }
        for (int col = 0; col < H; ++col) {
          float s = 0;
          for (int i = 0; i < I; ++i) s = s + h[i] * rb(w.w2[(std::size_t(e) * H + col) * I + i]);
          float y = rb(s);
          if (c.expert_bias) y = rb(y + rb(w.b2[std::size_t(e) * H + col]));
          const float p = rb(y * in.topk_weights[t * K + k]);  // * top_k_weights
          acc[col] = rb(acc[col] + p);                         // index_add_ into bf16
        }
      }
  }
  return out;
}

// run_layer in hf-bf16 against hf_eager on every rank, element by element (n counts them); returns
// how many elements of `other` (another mode's outputs, or nullptr) differ from the eager loop.
std::size_t check_eager(const Trace& tr, const LayerOutputs* other, std::size_t& n) {
  const WeightProvider wp(tr);
  ReferenceOptions ro;
  ro.numerics = Numerics::hf_bf16;
  const LayerOutputs hf = run_layer(tr, 0, wp, ro);
  std::size_t differ = 0;
  for (int r = 0; r < tr.config.num_ranks; ++r) {
    const std::vector<float> want = hf_eager(tr, r);
    REQUIRE(hf.ranks[r].final_out.f32.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i, ++n) {
      CAPTURE(r);
      CAPTURE(i);
      REQUIRE(hf.ranks[r].final_out.f32[i] == want[i]);
      if (other) differ += other->ranks[r].final_out.f32[i] != want[i];
    }
  }
  return differ;
}

}  // namespace

TEST_CASE("hf-bf16 equals transformers' eager bf16 loop bit for bit; bf16 mode does not") {
  TraceShape s;
  s.experts = 8;
  s.top_k = 4;
  s.tokens = 9;
  s.token_dtype = DType::bf16;
  Trace tr = make_trace(s);
  // Slots out of expert order, and a duplicate id: the loop's order is by expert, then slot.
  tr.layers[0].ranks[0].topk_ids[0 * 4 + 0] = 7;
  tr.layers[0].ranks[0].topk_ids[0 * 4 + 1] = 2;
  tr.layers[0].ranks[0].topk_ids[0 * 4 + 2] = 7;
  tr.layers[0].ranks[0].topk_ids[0 * 4 + 3] = 0;
  const WeightProvider wp(tr);
  ReferenceOptions ro;
  ro.numerics = Numerics::bf16;
  const LayerOutputs fused = run_layer(tr, 0, wp, ro);
  std::size_t n = 0;
  const std::size_t differ = check_eager(tr, &fused, n);
  CHECK(differ > n / 10);  // the fused-kernel rounding points disagree with HF eager on many elements
  CHECK(parse_numerics("hf-bf16") == Numerics::hf_bf16);
  CHECK(output_dtype(Numerics::hf_bf16) == DType::bf16);
}

TEST_CASE("hf-bf16 with GPT-OSS's biases and clamped SwiGLU equals transformers' eager loop bit for bit") {
  TraceShape s;
  s.act = Activation::swiglu_oai;
  s.bias = true;
  s.token_dtype = DType::bf16;
  Trace tr = make_trace(s);
  std::size_t n = 0;
  check_eager(tr, nullptr, n);
  CHECK(n > 0);
}
