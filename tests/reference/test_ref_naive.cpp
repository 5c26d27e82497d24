// The reference against an independent naive-loop model on random traces: exact within 1e-12
// relative, fp32 and bf16 bit for bit (the naive model is NUMERICS.md written as plain loops).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "error.hpp"
#include "ref_fixtures.hpp"

using namespace moesim;
using namespace moesim::testing;

namespace {

std::vector<TraceShape> shapes() {
  std::vector<TraceShape> out;
  for (Activation a : {Activation::silu_gated, Activation::gelu_erf_gated, Activation::gelu_tanh_gated,
                       Activation::silu, Activation::gelu_erf, Activation::gelu_tanh}) {
    TraceShape s;
    s.act = a;
    out.push_back(s);
  }
  TraceShape s;  // everything at once: shared experts, scaling, generated weights, bf16 tokens
  s.shared = 2, s.scaling = 2.5, s.stored_weights = false, s.token_dtype = DType::bf16;
  s.hidden = 300, s.inter = 40;  // depth past one 256-wide chunk, widths not multiples of the panel
  out.push_back(s);
  s.on_input = true, s.shared = 1, s.hidden = 33, s.inter = 7, s.top_k = 4;
  out.push_back(s);
  // Schema v2's families: GPT-OSS (biases, clamped SwiGLU), Qwen2-MoE (gated shared expert),
  // DeepSeek-V3 (weights holding the routed scaling factor).
  TraceShape oss;
  oss.act = Activation::swiglu_oai, oss.bias = true, oss.shared = 1;
  out.push_back(oss);
  TraceShape qwen;
  qwen.shared = 1, qwen.shared_gate = true, qwen.token_dtype = DType::bf16;
  out.push_back(qwen);
  TraceShape dsv3;
  dsv3.shared = 1, dsv3.scaling = 2.5, dsv3.include_scaling = true;
  out.push_back(dsv3);
  return out;
}

// A trace with -1 ids and an EPLB-style map (8 physical slots over 5 logical experts).
Trace with_holes_and_replicas(TraceShape s) {
  Trace t = make_trace(s);
  Placement& p = t.config.placement;
  p.kind = PlacementKind::eplb;
  p.num_logical = 5;
  p.physical_to_logical = {0, 1, 2, 3, 4, 0, 1, 2};
  if (t.layers[0].weights) {
    auto& w = *t.layers[0].weights;
    w.w1.resize(w.w1.size() / 8 * 5);
    w.w2.resize(w.w2.size() / 8 * 5);
    if (!w.b1.empty()) {
      w.b1.resize(w.b1.size() / 8 * 5);
      w.b2.resize(w.b2.size() / 8 * 5);
    }
  }
  for (auto& r : t.layers[0].ranks)
    for (std::size_t i = 0; i < r.topk_ids.size(); i += 4) r.topk_ids[i] = -1;
  return t;
}

}  // namespace

TEST_CASE("exact agrees with the naive float64 loops to 1e-12 relative") {
  for (const TraceShape& s : shapes()) {
    for (const Trace& t : {make_trace(s), with_holes_and_replicas(s)}) {
      CAPTURE(name(t.config.activation));
      CAPTURE(t.config.hidden);
      const auto out = run_reference(t, {});
      for (int r = 0; r < t.config.num_ranks; ++r) {
        std::vector<double> expert;
        const auto want = naive_final<double>(t, r, false, &expert);
        const RankOutputs& got = out[0].ranks[r];
        REQUIRE(got.final_out.size() == want.size());
        REQUIRE(got.expert_out.size() == expert.size());
        double worst = 0;
        for (std::size_t i = 0; i < want.size(); ++i)
          worst = std::max(worst, std::abs(got.final_out[i] - want[i]) / std::max(std::abs(want[i]), 1e-300));
        for (std::size_t i = 0; i < expert.size(); ++i)
          if (expert[i] != 0)
            worst = std::max(worst, std::abs(got.expert_out[i] - expert[i]) / std::abs(expert[i]));
          else
            CHECK(got.expert_out[i] == 0.0);
        CHECK(worst <= 1e-12);
      }
    }
  }
}

TEST_CASE("fp32 and bf16 equal the naive loops of NUMERICS.md bit for bit") {
  for (const Numerics n : {Numerics::fp32, Numerics::bf16}) {
    for (const TraceShape& s : shapes()) {
      const Trace t = with_holes_and_replicas(s);
      CAPTURE(name(n));
      CAPTURE(name(t.config.activation));
      ReferenceOptions o;
      o.numerics = n;
      const auto out = run_reference(t, o);
      for (int r = 0; r < t.config.num_ranks; ++r) {
        std::vector<float> expert;
        const auto want = naive_final<float>(t, r, n == Numerics::bf16, &expert);
        const RankOutputs& got = out[0].ranks[r];
        REQUIRE(!got.final_out.wide);
        REQUIRE(got.final_out.f32.size() == want.size());
        CHECK(std::memcmp(got.final_out.f32.data(), want.data(), want.size() * sizeof(float)) == 0);
        CHECK(std::memcmp(got.expert_out.f32.data(), expert.data(), expert.size() * sizeof(float)) == 0);
        if (n == Numerics::bf16)
          for (float v : got.final_out.f32) REQUIRE(v == round_bf16(v));
      }
    }
  }
}

TEST_CASE("generated weights are the ones moesim gen stores, expert by expert") {
  TraceShape s;
  s.stored_weights = false, s.shared = 2;
  Trace t = make_trace(s);
  t.layers[0].index = 3;  // streams are keyed by the layer's index, not its position
  t.config.weight_dtype = DType::bf16;
  const WeightProvider wp(t);
  for (int e : {0, 5, 7}) {
    const ExpertMatrices got = wp.routed(0, e), want = naive_matrices(t, e, false);
    CHECK(got.w1 == want.w1);
    CHECK(got.w2 == want.w2);
    CHECK(got.w1 != naive_matrices(t, e == 0 ? 1 : 0, false).w1);
    for (float v : got.w1) REQUIRE(v == round_bf16(v));
  }
  CHECK(wp.shared(0, 1).w2 == naive_matrices(t, 1, true).w2);
  CHECK(wp.shared(0, 1).w2 != wp.shared(0, 0).w2);
  CHECK_THROWS_AS(wp.routed(0, 8), Error);
}
