// MoE semantics, each on its own: -1 ids, zero weights, shared experts, routed scaling, placement
// maps and router weights applied to the input.
#include <doctest/doctest.h>

#include <cstring>

#include "error.hpp"
#include "ref_fixtures.hpp"

using namespace moesim;
using namespace moesim::testing;

namespace {

RankOutputs run_rank(const Trace& t, int r, Numerics n = Numerics::exact) {
  ReferenceOptions o;
  o.numerics = n;
  return run_reference(t, o).at(0).ranks.at(r);
}

bool same_bits(const Values& a, const Values& b) {
  if (a.wide != b.wide || a.size() != b.size()) return false;
  return a.wide ? std::memcmp(a.f64.data(), b.f64.data(), a.f64.size() * 8) == 0
                : std::memcmp(a.f32.data(), b.f32.data(), a.f32.size() * 4) == 0;
}

// Row `tok` of a [T, H] tensor.
std::vector<double> row(const Values& v, std::int64_t tok, int H) {
  std::vector<double> out(H);
  for (int h = 0; h < H; ++h) out[h] = v[tok * H + h];
  return out;
}

}  // namespace

TEST_CASE("-1 ids contribute nothing and leave their expert_out slot zero") {
  for (Numerics n : {Numerics::exact, Numerics::bf16}) {
    TraceShape s;
    Trace with_hole = make_trace(s), zero_weight = make_trace(s);
    // Token 2 of rank 1, slot 1: -1 in one trace, the same slot with weight 0 in the other.
    with_hole.layers[0].ranks[1].topk_ids[2 * s.top_k + 1] = -1;
    zero_weight.layers[0].ranks[1].topk_weights[2 * s.top_k + 1] = 0.0f;
    const auto a = run_rank(with_hole, 1, n), b = run_rank(zero_weight, 1, n);
    CHECK(same_bits(a.final_out, b.final_out));
    for (int h = 0; h < s.hidden; ++h) {
      CHECK(a.expert_out[(2 * s.top_k + 1) * s.hidden + h] == 0.0);
      CHECK(b.expert_out[(2 * s.top_k + 1) * s.hidden + h] != 0.0);
    }
  }
}

TEST_CASE("a token whose ids are all -1 gets zeros, or only the shared experts") {
  TraceShape s;
  s.shared = 1;
  Trace t = make_trace(s);
  for (int k = 0; k < s.top_k; ++k) t.layers[0].ranks[0].topk_ids[3 * s.top_k + k] = -1;
  const auto out = run_rank(t, 0);
  // shared expert alone, computed directly.
  const PreparedExpert shared(WeightProvider(t).shared(0, 0), s.act, Numerics::exact);
  TokenRows tr;
  tr.x = t.layers[0].ranks[0].x.data() + 3 * s.hidden;
  tr.rows = 1;
  std::vector<double> y(s.hidden);
  ExpertOptions eo = expert_options(t.config, {});
  run_expert(shared, tr, eo, y.data());
  CHECK(row(out.final_out, 3, s.hidden) == y);
  t.config.num_shared_experts = 0;
  for (double v : row(run_rank(t, 0).final_out, 3, s.hidden)) CHECK(v == 0.0);
}

TEST_CASE("zero router weights give a zero routed sum") {
  TraceShape s;
  Trace t = make_trace(s);
  for (auto& w : t.layers[0].ranks[1].topk_weights) w = 0.0f;
  const auto out = run_rank(t, 1);
  for (std::size_t i = 0; i < out.final_out.size(); ++i) REQUIRE(out.final_out[i] == 0.0);
  for (std::size_t i = 0; i < out.expert_out.size(); ++i) REQUIRE(out.expert_out[i] != 0.0);
}

TEST_CASE("shared experts add their FFN of the token to the routed sum") {
  TraceShape s;
  s.shared = 2;
  const Trace with = make_trace(s);
  Trace without = with;
  without.config.num_shared_experts = 0;
  const auto a = run_rank(with, 0), b = run_rank(without, 0);
  const WeightProvider wp(with);
  const PreparedExpert s0(wp.shared(0, 0), s.act, Numerics::exact), s1(wp.shared(0, 1), s.act, Numerics::exact);
  const RankInput& in = with.layers[0].ranks[0];
  TokenRows tr;
  tr.x = in.x.data();
  tr.rows = in.num_tokens;
  std::vector<double> y0(in.x.size()), y1(in.x.size());
  const ExpertOptions eo = expert_options(with.config, {});
  run_expert(s0, tr, eo, y0.data());
  run_expert(s1, tr, eo, y1.data());
  for (std::size_t i = 0; i < y0.size(); ++i) REQUIRE(a.final_out[i] == b.final_out[i] + (y0[i] + y1[i]));
  CHECK(same_bits(a.expert_out, b.expert_out));
}

TEST_CASE("the routed scaling factor multiplies the routed sum, not the shared experts") {
  TraceShape s;
  s.shared = 1;
  Trace t1 = make_trace(s);
  Trace t25 = t1;
  t25.config.routed_scaling_factor = 2.5;
  Trace no_shared1 = t1, no_shared25 = t25;
  no_shared1.config.num_shared_experts = no_shared25.config.num_shared_experts = 0;
  const auto a1 = run_rank(no_shared1, 0), a25 = run_rank(no_shared25, 0);
  for (std::size_t i = 0; i < a1.final_out.size(); ++i) REQUIRE(a25.final_out[i] == a1.final_out[i] * 2.5);
  const auto s1 = run_rank(t1, 0), s25 = run_rank(t25, 0);
  for (std::size_t i = 0; i < a1.final_out.size(); ++i) {
    const double shared = s1.final_out[i] - a1.final_out[i];
    REQUIRE(s25.final_out[i] == doctest::Approx(a25.final_out[i] + shared).epsilon(1e-12));
  }
}

TEST_CASE("EPLB replicas share their logical expert's weights") {
  TraceShape s;
  Trace t = make_trace(s);
  Placement& p = t.config.placement;
  p.kind = PlacementKind::eplb;
  p.num_logical = 6;
  p.physical_to_logical = {0, 1, 2, 3, 4, 5, 2, 4};  // slots 6 and 7 replicate 2 and 4
  auto& w = *t.layers[0].weights;
  w.w1.resize(w.w1.size() / 8 * 6);
  w.w2.resize(w.w2.size() / 8 * 6);
  Trace replica = t;
  auto& ids = replica.layers[0].ranks[0].topk_ids;
  int swapped = 0;
  for (auto& id : ids)
    if (id == 2) id = 6, ++swapped;
    else if (id == 4) id = 7, ++swapped;
  REQUIRE(swapped > 0);
  CHECK(same_bits(run_rank(t, 0).final_out, run_rank(replica, 0).final_out));
  CHECK(same_bits(run_rank(t, 0).expert_out, run_rank(replica, 0).expert_out));
  // A map to different logical experts changes the result.
  Trace other = t;
  other.config.placement.physical_to_logical = {0, 1, 5, 3, 4, 2, 2, 4};
  CHECK_FALSE(same_bits(run_rank(t, 0).final_out, run_rank(other, 0).final_out));
}

TEST_CASE("an explicit expert-to-rank map does not change the math") {
  TraceShape s;
  Trace t = make_trace(s);
  Trace moved = t;
  moved.config.placement.kind = PlacementKind::explicit_map;
  moved.config.placement.expert_to_rank = {1, 0, 1, 0, 1, 0, 1, 0};
  CHECK(same_bits(run_rank(t, 1).final_out, run_rank(moved, 1).final_out));
}

TEST_CASE("router weights on the input scale what the expert sees, and the sum is unweighted") {
  TraceShape s;
  s.on_input = true;
  s.top_k = 1;
  const Trace t = make_trace(s);
  const auto out = run_rank(t, 0);
  const RankInput& in = t.layers[0].ranks[0];
  const PreparedExpert e(WeightProvider(t).routed(0, in.topk_ids[4]), s.act, Numerics::exact);
  std::vector<double> want(s.hidden);
  TokenRows tr;
  tr.x = in.x.data() + 4 * s.hidden;
  tr.input_weights = in.topk_weights.data() + 4;
  tr.rows = 1;
  run_expert(e, tr, expert_options(t.config, {}), want.data());
  CHECK(row(out.final_out, 4, s.hidden) == want);
  // The same token without the weight on the input differs (the FFN is not linear).
  TokenRows plain = tr;
  plain.input_weights = nullptr;
  std::vector<double> unweighted(s.hidden);
  run_expert(e, plain, expert_options(t.config, {}), unweighted.data());
  const double w = in.topk_weights[4];
  CHECK(std::abs(unweighted[0] * w - want[0]) > 1e-9);
}

TEST_CASE("ids past the expert count are reported with file, dataset and index") {
  TraceShape s;
  Trace t = make_trace(s);
  t.layers[0].ranks[1].topk_ids[5] = 8;
  CHECK_THROWS_WITH_AS(run_reference(t, {}),
                       "mem.h5: /layers/0/ranks/1/topk_ids: id 8 at token 1 slot 2 out of range [-1, 8)", Error);
}

TEST_CASE("a failure inside the pool is reported the same way for any thread count") {
  TraceShape s;
  Trace t = make_trace(s);
  auto& w = *t.layers[0].weights;
  w.w2.resize(w.w2.size() / 8 * 5);  // experts 5, 6 and 7 lose their w2
  std::string first;
  for (int threads : {1, 2, 3}) {
    ReferenceOptions o;
    o.threads = threads;
    try {
      run_reference(t, o);
      FAIL("no error");
    } catch (const Error& e) {
      if (first.empty()) first = e.what();
      CHECK(std::string(e.what()) == first);
    }
  }
  CHECK(first.find("mem.h5: /layers/0/weights: expert ") == 0);
  CHECK(first.find(" missing from stored weights") != std::string::npos);
}

TEST_CASE("a placement naming a logical expert that does not exist is reported") {
  TraceShape s;
  Trace t = make_trace(s);
  t.config.placement.physical_to_logical[6] = 8;
  CHECK_THROWS_WITH_AS(run_reference(t, {}),
                       "mem.h5: /config/placement/physical_to_logical: entry 6 names logical expert 8, outside [0, 8)",
                       Error);
}
