// Schema v2's model families in the reference (GPT-OSS's biases and clamped SwiGLU, Qwen2-MoE's
// shared-expert gate, DeepSeek-V3's weights that hold the routed scaling factor), each checked
// against a variant with the wrong layout or rule, so a reference that ignored the stored layout
// fails. test_ref_naive.cpp holds the same families to NUMERICS.md's loops bit for bit.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "activation.hpp"
#include "ref_fixtures.hpp"
#include "test_files.hpp"
#include "trace_io.hpp"

using namespace moesim;
using namespace moesim::testing;

namespace {

std::vector<float> final_fp32(const Trace& t, int rank = 0) {
  ReferenceOptions o;
  o.numerics = Numerics::fp32;
  return run_reference(t, o)[0].ranks[rank].final_out.f32;
}

std::vector<float> expert_fp32(const Trace& t, int rank = 0) {
  ReferenceOptions o;
  o.numerics = Numerics::fp32;
  return run_reference(t, o)[0].ranks[rank].expert_out.f32;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TraceShape gpt_oss() {
  TraceShape s;
  s.act = Activation::swiglu_oai, s.bias = true;
  return s;
}

}  // namespace

TEST_CASE("swiglu_oai clamps the gate above and the up value on both sides") {
  const float a = 1.702f, lim = 7.0f;
  CHECK(swiglu_oai(8.0f, 0.5f, a, lim) == swiglu_oai(7.0f, 0.5f, a, lim));
  CHECK(swiglu_oai(2.0f, 9.0f, a, lim) == swiglu_oai(2.0f, 7.0f, a, lim));
  CHECK(swiglu_oai(2.0f, -9.0f, a, lim) == swiglu_oai(2.0f, -7.0f, a, lim));
  CHECK(swiglu_oai(-8.0f, 0.5f, a, lim) != swiglu_oai(-7.0f, 0.5f, a, lim));  // no lower clamp on the gate
  for (float g : {-3.0f, -0.25f, 0.0f, 0.5f, 2.0f, 6.5f, 12.0f})
    for (float u : {-8.0f, -1.0f, 0.0f, 0.75f, 3.0f, 7.5f}) {
      const double gc = std::min<double>(g, 7.0), uc = std::max(-7.0, std::min<double>(u, 7.0));
      const double want = (uc + 1) * gc / (1 + std::exp(-1.702 * gc));
      CAPTURE(g);
      CAPTURE(u);
      CHECK(swiglu_oai(double(g), double(u), 1.702, 7.0) == doctest::Approx(want).epsilon(1e-15));
      CHECK(swiglu_oai(g, u, a, lim) == doctest::Approx(want).epsilon(1e-6));
    }
}

TEST_CASE("expert biases: gate rows and up rows take their own b1, b2 is added per column") {
  const Trace t = make_trace(gpt_oss());
  const auto base = final_fp32(t);
  Trace swapped = t;  // gate and up halves of every b1 row exchanged: a wrong layout
  {
    auto& b1 = swapped.layers[0].weights->b1;
    const int I = t.config.intermediate;
    for (int e = 0; e < t.config.num_experts; ++e)
      for (int i = 0; i < I; ++i) std::swap(b1[e * 2 * I + i], b1[e * 2 * I + I + i]);
  }
  CHECK(!same_bits(final_fp32(swapped), base));
  // b2 enters once per output column after GEMM2: without it, expert_out + b2 is the same float.
  Trace no_b2 = t;
  std::fill(no_b2.layers[0].weights->b2.begin(), no_b2.layers[0].weights->b2.end(), 0.0f);
  const auto with = expert_fp32(t), without = expert_fp32(no_b2);
  const RankInput& in = t.layers[0].ranks[0];
  const int H = t.config.hidden, K = t.config.top_k;
  int checked = 0;
  for (std::int64_t tok = 0; tok < in.num_tokens; ++tok)
    for (int k = 0; k < K; ++k) {
      const int e = in.topk_ids[tok * K + k];
      for (int c = 0; c < H; ++c) {
        const std::size_t i = (tok * K + k) * H + c;
        REQUIRE(with[i] == without[i] + t.layers[0].weights->b2[e * H + c]);
        ++checked;
      }
    }
  CHECK(checked == in.num_tokens * K * H);
}

TEST_CASE("the shared-expert gate scales the shared output by sigmoid(x . shared_gate)") {
  TraceShape s;
  s.shared = 1, s.shared_gate = true;
  Trace t = make_trace(s);
  Trace ungated = t;
  ungated.config.shared_expert_gate = false;
  CHECK(!same_bits(final_fp32(t), final_fp32(ungated)));
  // A zero gate vector gives sigmoid(0) = 1/2 for every token: the same bits as an ungated
  // trace whose shared down projection is halved (exact in float).
  std::fill(t.layers[0].weights->shared_gate.begin(), t.layers[0].weights->shared_gate.end(), 0.0f);
  for (float& w : ungated.layers[0].weights->shared_w2) w *= 0.5f;
  for (int r = 0; r < t.config.num_ranks; ++r) CHECK(same_bits(final_fp32(t, r), final_fp32(ungated, r)));
}

TEST_CASE("topk_weights that include routed_scaling_factor are not scaled again") {
  TraceShape s;
  s.shared = 1, s.scaling = 2.5, s.include_scaling = true;
  const Trace t = make_trace(s);
  Trace unscaled = t;
  unscaled.config.routed_scaling_factor = 1.0;
  unscaled.config.topk_weights_include_scaling = false;
  Trace twice = t;
  twice.config.topk_weights_include_scaling = false;
  for (int r = 0; r < t.config.num_ranks; ++r) {
    CHECK(same_bits(final_fp32(t, r), final_fp32(unscaled, r)));
    CHECK(!same_bits(final_fp32(t, r), final_fp32(twice, r)));
  }
}

TEST_CASE("schema v2 round trip: family attributes, biases and the shared gate") {
  TraceShape s = gpt_oss();
  s.shared = 1, s.shared_gate = true, s.scaling = 2.5, s.include_scaling = true;
  Trace t = make_trace(s);
  t.config.swiglu_alpha = 1.5;
  const std::string path = moesim::test::tmp("families_roundtrip.h5");
  write_trace(t, path);
  CHECK(h5::File::open_read(path).attr_int("/", "schema_version") == 2);
  const Trace back = read_trace(path);
  const TraceConfig& c = back.config;
  CHECK(c.activation == Activation::swiglu_oai);
  CHECK(c.swiglu_alpha == 1.5);
  CHECK(c.swiglu_limit == 0.6);
  CHECK(c.expert_bias);
  CHECK(c.shared_expert_gate);
  CHECK(c.topk_weights_include_scaling);
  const ExpertWeights &w = *back.layers[0].weights, &want = *t.layers[0].weights;
  CHECK(w.b1 == want.b1);
  CHECK(w.b2 == want.b2);
  CHECK(w.shared_b1 == want.shared_b1);
  CHECK(w.shared_b2 == want.shared_b2);
  CHECK(w.shared_gate == want.shared_gate);
  for (int r = 0; r < c.num_ranks; ++r) CHECK(same_bits(final_fp32(back, r), final_fp32(t, r)));
}
