// The whole simulated pipeline: identity experts through each combine model (DeepEP's and
// MORI's combine checks), every correct pairing against the reference on random and bundled
// traces, order and thread-count independence, and the seed's all-k flow.
#include <doctest/doctest.h>

#include <limits>
#include <set>

#include "error.hpp"
#include "expert_weights.hpp"
#include "generate.hpp"
#include "agreement.hpp"
#include "sim_fixtures.hpp"
#include "simulate.hpp"
#include "expert_side.hpp"
#include "identity_check.hpp"
#include "trace_io.hpp"

using namespace moesim;
using namespace moesim::sim;

namespace {

struct Pairing {
  DispatchModel d;
  ConsumerModel c;
  CombineModel k;
};
const Pairing kCorrect[] = {
    {DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum},
    {DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::internode_v1},
    {DispatchModel::deepep_ht, ConsumerModel::deepep_local, CombineModel::rank_sum},
    {DispatchModel::deepep_ll, ConsumerModel::per_expert, CombineModel::weighted},
    {DispatchModel::pplx, ConsumerModel::per_expert, CombineModel::weighted},
    {DispatchModel::pairs, ConsumerModel::target_expert, CombineModel::pair_sum},
    {DispatchModel::pairs, ConsumerModel::dedup_filter, CombineModel::rank_sum},
};

SimOptions options_for(const Pairing& p, Numerics n) {
  SimOptions o;
  o.dispatch.model = p.d;
  o.consumer.model = p.c;
  o.combine = p.k;
  o.numerics = n;
  return o;
}

std::string label(const Pairing& p) {
  return std::string(name(p.d)) + " + " + std::string(name(p.c)) + " + " + std::string(name(p.k));
}

// Every correct pairing on `tr` against the reference, in each mode: no bad token, within the
// mode's tolerance, no wasted computation, and the weighted model (the reference's own combine
// primitive on the same per-slot outputs) to the bit.
void check_correct_pairings(const Trace& tr, std::initializer_list<Numerics> modes) {
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  for (Numerics n : modes) {
    ReferenceOptions ro;
    ro.numerics = n;
    const LayerOutputs ref = run_layer(tr, 0, wp, ro);
    for (const auto& p : kCorrect) {
      CAPTURE(label(p));
      CAPTURE(name(n));
      for (DeepepVersion v : {DeepepVersion::v1, DeepepVersion::v2}) {
        if (v == DeepepVersion::v2 && p.d != DispatchModel::deepep_ht) continue;
        CAPTURE(name(v));
        SimOptions o = options_for(p, n);
        o.deepep_version = v;
        CHECK(judge_pairing(p.d, o.consumer, p.k).correct);
        const LayerRun run = simulate_layer(tr, 0, wp, map, o);
        const Agreement a = compare_final(run, ref, tr, 0, n, p.k);
        CHECK(a.bad_tokens == 0);
        CHECK(a.worst.ratio <= 1);
        if (p.k == CombineModel::weighted)
          for (int r = 0; r < tr.config.num_ranks; ++r)
            for (std::size_t i = 0; i < ref.ranks[r].final_out.size(); ++i)
              REQUIRE(run.ranks[r].final_out[i] == ref.ranks[r].final_out[i]);
        CHECK(run.stats.waste() == 1.0);
      }
    }
  }
}

}  // namespace

TEST_CASE("identity experts combined: x times unique ranks (unweighted) or x times the sum of weights (weighted)") {
  test::TraceShape shape;
  shape.ranks = 6;
  shape.experts = 24;
  shape.tokens = {9, 14, 3, 0, 11, 6};
  Trace tr = test::make_trace(shape);
  tr.config.mori.gpus_per_node = 2;  // internode-v1: three nodes of two ranks
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  const int K = shape.top_k, H = shape.hidden;
  for (auto [dm, km] : {std::pair{DispatchModel::mori, CombineModel::rank_sum},
                        std::pair{DispatchModel::mori, CombineModel::internode_v1},
                        std::pair{DispatchModel::deepep_ht, CombineModel::rank_sum},
                        std::pair{DispatchModel::deepep_ll, CombineModel::weighted},
                        std::pair{DispatchModel::pplx, CombineModel::weighted},
                        std::pair{DispatchModel::pairs, CombineModel::pair_sum}}) {
    const std::string models = std::string(name(dm)) + " + " + std::string(name(km));  // clang 14: no binding in CAPTURE
    CAPTURE(models);
    SimOptions o;
    o.dispatch.model = dm;
    o.consumer.model = ConsumerModel::identity;
    o.combine = km;
    const auto sources = layer_sources(tr, 0, map, o);
    const Dispatch d = dispatch(map, K, sources, o.dispatch);
    std::vector<RankRun> runs(shape.ranks);
    run_expert_side(tr, 0, wp, map, d, o, runs);
    run_combine(tr, 0, wp, map, sources, d, o, runs);
    for (int r = 0; r < shape.ranks; ++r) {
      const RankInput& in = tr.layers[0].ranks[r];
      for (std::int64_t t = 0; t < in.num_tokens; ++t) {
        std::set<int> ranks;
        double wsum = 0;
        int slots = 0;
        for (int k = 0; k < K; ++k)
          if (in.topk_ids[t * K + k] >= 0) {
            ranks.insert(map.rank_of[in.topk_ids[t * K + k]]);
            wsum += static_cast<double>(in.topk_weights[t * K + k]);
            ++slots;
          }
        // pair-sum adds one row per valid slot (the seed's option B weights them on the expert side).
        const double factor = km == CombineModel::weighted ? wsum
                              : km == CombineModel::pair_sum ? slots
                                                             : static_cast<double>(ranks.size());
        for (int h = 0; h < H; ++h) {
          CAPTURE(r);
          CAPTURE(t);
          CHECK(runs[r].combine_out.f64[t * H + h] == doctest::Approx(in.x[t * H + h] * factor).epsilon(1e-12));
        }
      }
    }
  }
}

TEST_CASE("identity experts pass each library's own combine check; the wrong combine or old -1 handling fails it") {
  test::TraceShape shape;
  shape.ranks = 6;
  shape.experts = 24;
  shape.hidden = 16;
  shape.tokens = {9, 14, 3, 0, 11, 6};
  shape.minus_one_rate = 0.2;
  shape.token_dtype = DType::bf16;
  Trace tr = test::make_trace(shape);
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  auto check = [&](DispatchModel dm, CombineModel km, Numerics n, NegativeIds neg = NegativeIds::skip) {
    SimOptions o;
    o.dispatch.model = dm;
    o.dispatch.negative = neg;
    o.consumer.model = ConsumerModel::identity;
    o.combine = km;
    o.numerics = n;
    CHECK_FALSE(judge_pairing(dm, o.consumer, km).correct);  // a check, not a layer's output
    return check_identity(tr, 0, map, simulate_layer(tr, 0, wp, map, o), o);
  };
  for (Numerics n : {Numerics::exact, Numerics::bf16, Numerics::fp8}) {
    CAPTURE(name(n));
    for (auto [dm, km] : {std::pair{DispatchModel::mori, CombineModel::rank_sum},
                          std::pair{DispatchModel::deepep_ht, CombineModel::rank_sum},
                          std::pair{DispatchModel::deepep_ll, CombineModel::weighted},
                          std::pair{DispatchModel::pplx, CombineModel::weighted}}) {
      const IdentityCheck ck = check(dm, km, n);
      CAPTURE(ck.bar);
      CHECK(ck.passes);
      if (n != Numerics::fp8) CHECK(ck.bad_tokens == 0);  // fp8 rows are ~6% off: DeepEP's fp8 bar
      CHECK(ck.tokens == 43);
      if (n == Numerics::exact) CHECK(ck.max_abs < 1e-12);
    }
  }
  // An unweighted sum where DeepEP LL weights, and a -1 sent to rank 0 by old MORI: both fail.
  SimOptions o;
  o.dispatch.model = DispatchModel::deepep_ll;
  o.consumer.model = ConsumerModel::identity;
  o.combine = CombineModel::pair_sum;
  o.numerics = Numerics::bf16;
  const LayerRun run = simulate_layer(tr, 0, wp, map, o);
  o.combine = CombineModel::weighted;  // DeepEP LL's test expects x * sum of weights
  CHECK_FALSE(check_identity(tr, 0, map, run, o).passes);
  const IdentityCheck rank0 = check(DispatchModel::mori, CombineModel::rank_sum, Numerics::bf16, NegativeIds::rank0);
  CHECK_FALSE(rank0.passes);
  CHECK(rank0.bad_tokens > 0);
}

TEST_CASE("every correct pairing matches the reference on random traces") {
  test::TraceShape shape;
  shape.hidden = 32;
  shape.inter = 16;
  shape.tokens = {13, 21, 0, 8};
  shape.minus_one_rate = 0.15;
  const Trace tr = test::make_trace(shape);
  check_correct_pairings(tr, {Numerics::exact, Numerics::bf16});
}

TEST_CASE("every correct pairing matches the reference on schema v2's families") {
  // GPT-OSS's biases and clamped SwiGLU, Qwen2-MoE's shared-expert gate and DeepSeek-V3's
  // weights that hold the factor, all at once: the simulator's combine must apply each as the
  // reference does.
  test::TraceShape shape;
  shape.hidden = 16;
  shape.inter = 8;
  Trace tr = test::make_trace(shape);
  TraceConfig& c = tr.config;
  c.activation = Activation::swiglu_oai;
  c.swiglu_limit = 0.5;
  c.num_shared_experts = 1;
  c.shared_intermediate = 4;
  c.routed_scaling_factor = 2.5;
  c.topk_weights_include_scaling = true;
  c.expert_bias = true;
  c.shared_expert_gate = true;
  ExpertWeights w = generate_weights(c, tr.weight_spec, 0);
  auto origin = [](std::vector<float>& v, int n, int cols) {  // bias (e, i) = e / 16 - i / 64
    for (int e = 0; e < n; ++e)
      for (int i = 0; i < cols; ++i) v.push_back(static_cast<float>(e) / 16 - static_cast<float>(i) / 64);
  };
  origin(w.b1, c.num_experts, 2 * c.intermediate);
  origin(w.b2, c.num_experts, c.hidden);
  origin(w.shared_b1, 1, 2 * c.shared_intermediate);
  origin(w.shared_b2, 1, c.hidden);
  origin(w.shared_gate, 1, c.hidden);
  tr.layers[0].weights = std::move(w);
  check_correct_pairings(tr, {Numerics::fp32, Numerics::bf16});
}

TEST_CASE("every correct pairing matches the reference on the bundled traces") {
  for (const char* file : {"default.h5", "seed-ep8.h5"}) {
    const Trace tr = read_trace(std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/" + file);
    const ExpertMap map = make_expert_map(tr.config);
    const WeightProvider wp(tr);
    ReferenceOptions ro;
    ro.numerics = Numerics::bf16;
    const LayerOutputs ref = run_layer(tr, 0, wp, ro);
    for (const auto& p : kCorrect) {
      CAPTURE(file);
      CAPTURE(label(p));
      const LayerRun run = simulate_layer(tr, 0, wp, map, options_for(p, Numerics::bf16));
      CHECK(compare_final(run, ref, tr, 0, Numerics::bf16, p.k).bad_tokens == 0);
    }
  }
}

namespace {
// Four ranks with uneven token counts, H = 16.
test::TraceShape uneven_shape() {
  test::TraceShape shape;
  shape.hidden = 16;
  shape.tokens = {17, 9, 12, 5};
  return shape;
}
}  // namespace

TEST_CASE("results do not depend on row order or thread count") {
  const test::TraceShape shape = uneven_shape();
  const Trace tr = test::make_trace(shape);
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  for (const auto& p : kCorrect) {
    CAPTURE(label(p));
    SimOptions o = options_for(p, Numerics::bf16);
    const LayerRun canon = simulate_layer(tr, 0, wp, map, o);
    o.dispatch.shuffle = true;
    o.dispatch.shuffle_seed = 7;
    o.threads = 2;
    const LayerRun shuffled = simulate_layer(tr, 0, wp, map, o);
    bool reordered = false;
    for (int r = 0; r < shape.ranks; ++r) {
      reordered = reordered || canon.dispatch.ranks[r].src_pos != shuffled.dispatch.ranks[r].src_pos;
      CHECK(canon.ranks[r].final_out.f32 == shuffled.ranks[r].final_out.f32);
      CHECK(canon.ranks[r].expert_out.f32 == shuffled.ranks[r].expert_out.f32);
    }
    CHECK(reordered);
  }
}

TEST_CASE("the expert side in chunks of destination ranks gives the bits of all ranks at once") {
  const test::TraceShape shape = uneven_shape();
  const Trace tr = test::make_trace(shape);
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  std::vector<Pairing> pairings(std::begin(kCorrect), std::end(kCorrect));
  pairings.push_back({DispatchModel::mori, ConsumerModel::all_k, CombineModel::rank_sum});  // K jobs a row
  for (const auto& p : pairings)
    for (Numerics n : {Numerics::exact, Numerics::bf16}) {
      CAPTURE(label(p));
      CAPTURE(name(n));
      SimOptions o = options_for(p, n);
      // The per-job buffer each run held at most shows the chunks.
      ExpertScratch whole, per_rank, halves;
      o.scratch = &whole;
      const LayerRun all = simulate_layer(tr, 0, wp, map, o);
      o.scratch = &per_rank;
      o.job_budget = 1;  // every rank alone
      const LayerRun one = simulate_layer(tr, 0, wp, map, o);
      const std::int64_t row_bytes = shape.hidden * static_cast<std::int64_t>(n == Numerics::exact ? 8 : 4);
      std::int64_t jobs = static_cast<std::int64_t>(whole.job_out.size()) / shape.hidden;
      o.scratch = &halves;
      o.job_budget = jobs / 2 * row_bytes;  // about half the jobs at once
      const LayerRun two = simulate_layer(tr, 0, wp, map, o);
      CHECK(per_rank.job_out.size() <= halves.job_out.size());
      CHECK(halves.job_out.size() < whole.job_out.size());
      CHECK(static_cast<std::int64_t>(halves.job_out.size()) * row_bytes / shape.hidden <= o.job_budget);
      for (int r = 0; r < shape.ranks; ++r) {
        CAPTURE(r);
        for (const LayerRun* x : {&one, &two}) {
          CHECK(x->ranks[r].expert_rows.f64 == all.ranks[r].expert_rows.f64);
          CHECK(x->ranks[r].expert_rows.f32 == all.ranks[r].expert_rows.f32);
          CHECK(x->ranks[r].expert_out.f64 == all.ranks[r].expert_out.f64);
          CHECK(x->ranks[r].expert_out.f32 == all.ranks[r].expert_out.f32);
          CHECK(x->ranks[r].final_out.f64 == all.ranks[r].final_out.f64);
          CHECK(x->ranks[r].final_out.f32 == all.ranks[r].final_out.f32);
        }
        CHECK(all.ranks[r].expert_out.size() > 0);
      }
    }
}

TEST_CASE("all-k on the seed's scenario: K computations per row, wrong outputs, and the run says why") {
  const Trace tr = read_trace(std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/seed-ep8.h5");
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  SimOptions o = options_for({DispatchModel::pairs, ConsumerModel::all_k, CombineModel::rank_sum}, Numerics::bf16);
  const PairingVerdict v = judge_pairing(o.dispatch.model, o.consumer, o.combine);
  CHECK_FALSE(v.correct);
  REQUIRE_FALSE(v.reasons.empty());
  CHECK(v.reasons[0].find("all-k computes every id of each row's top-k") != std::string::npos);
  const LayerRun run = simulate_layer(tr, 0, wp, map, o);
  const int K = tr.config.top_k;
  // The seed's arithmetic: every (token, expert) row computes all K ids.
  CHECK(run.stats.total_rows() == run.stats.pairs);
  CHECK(run.stats.total_performed() == run.stats.total_rows() * K);
  CHECK(run.stats.waste() == doctest::Approx(K));
  CHECK(run.stats.duplication() > 1.5);
  ReferenceOptions ro;
  ro.numerics = Numerics::bf16;
  LayerOutputs ref = run_layer(tr, 0, wp, ro);
  const Agreement a = compare_final(run, ref, tr, 0, Numerics::bf16, o.combine);
  CHECK(a.bad_tokens == a.tokens);
  // A reference that overflowed never "matches": inf - inf would have hidden it.
  LayerRun same = run;
  for (std::size_t r = 0; r < same.ranks.size(); ++r) same.ranks[r].final_out = ref.ranks[r].final_out;
  CHECK(compare_final(same, ref, tr, 0, Numerics::bf16, o.combine).bad_tokens == 0);
  ref.ranks[0].final_out.f32[1] = same.ranks[0].final_out.f32[1] = std::numeric_limits<float>::infinity();
  CHECK(compare_final(same, ref, tr, 0, Numerics::bf16, o.combine).bad_tokens == 1);
  // Masking non-local ids still over-computes: each token's local experts once per row it got.
  o.consumer.non_local = NonLocal::mask;
  const LayerRun masked = simulate_layer(tr, 0, wp, map, o);
  CHECK(masked.stats.waste() > 1.0);
  CHECK(masked.stats.waste() < K);
}

TEST_CASE("weights applied twice or never are flagged and wrong") {
  const Trace tr = test::make_trace({});
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  ReferenceOptions ro;
  const LayerOutputs ref = run_layer(tr, 0, wp, ro);
  for (const auto& p : {Pairing{DispatchModel::pairs, ConsumerModel::target_expert, CombineModel::weighted},
                        Pairing{DispatchModel::deepep_ll, ConsumerModel::per_expert, CombineModel::pair_sum}}) {
    CAPTURE(label(p));
    const SimOptions o = options_for(p, Numerics::exact);
    const PairingVerdict v = judge_pairing(p.d, o.consumer, p.k);
    CHECK_FALSE(v.correct);
    const std::string why = v.reasons.empty() ? "" : v.reasons[0];
    CHECK(why.find(p.k == CombineModel::weighted ? "applied twice" : "never applied") != std::string::npos);
    CHECK(compare_final(simulate_layer(tr, 0, wp, map, o), ref, tr, 0, Numerics::exact, p.k).bad_tokens > 0);
  }
}

TEST_CASE("correct pairings match the reference on generated traces: fp8 tokens, placements, shared experts") {
  struct Variant {
    const char* label;
    DType token;
    PlacementKind placement;
    int shared;
    double scaling;
    bool on_input;
    Numerics numerics;
  };
  const Variant variants[] = {
      {"fp8 tokens", DType::e4m3, PlacementKind::contiguous, 0, 1.0, false, Numerics::fp8},
      {"explicit placement", DType::bf16, PlacementKind::explicit_map, 0, 1.0, false, Numerics::bf16},
      {"eplb replicas", DType::bf16, PlacementKind::eplb, 0, 1.0, false, Numerics::exact},
      {"shared expert and scaling", DType::bf16, PlacementKind::contiguous, 1, 2.5, false, Numerics::bf16},
      {"router weight on input", DType::f32, PlacementKind::contiguous, 0, 1.0, true, Numerics::fp32},
  };
  for (const auto& v : variants) {
    CAPTURE(v.label);
    GenOptions g;
    g.seed = 11;
    g.num_ranks = 4;
    g.num_experts = 16;
    g.top_k = 4;
    g.hidden = 256;
    g.intermediate = 32;
    g.tokens_per_rank = 6;
    g.tokens_max = 14;
    g.sentinel_rate = 0.1;
    g.token_dtype = v.token;
    g.placement = v.placement;
    g.num_shared_experts = v.shared;
    g.routed_scaling_factor = v.scaling;
    Trace tr = generate(g);
    tr.config.router_weight_on_input = v.on_input;
    const ExpertMap map = make_expert_map(tr.config);
    const WeightProvider wp(tr);
    ReferenceOptions ro;
    ro.numerics = v.numerics;
    const LayerOutputs ref = run_layer(tr, 0, wp, ro);
    for (const auto& p : kCorrect) {
      CAPTURE(label(p));
      const LayerRun run = simulate_layer(tr, 0, wp, map, options_for(p, v.numerics));
      const Agreement a = compare_final(run, ref, tr, 0, v.numerics, p.k);
      CHECK(a.bad_tokens == 0);
      CHECK(a.worst.ratio <= 1);
    }
  }
}

TEST_CASE("internode-v1 rounds each node's partial before the cross-node sum; rank-sum rounds once") {
  test::TraceShape shape;
  shape.tokens = {1, 0, 0, 0};
  shape.hidden = 2;
  Trace tr = test::make_trace(shape);
  tr.layers[0].ranks[0].topk_ids = {0, 4, 8, 12};  // one expert on each rank
  tr.config.mori.gpus_per_node = 2;                // nodes {0, 1} and {2, 3}
  tr.config.mori.kernel_type = "InterNodeV1";
  CHECK(default_combine(DispatchModel::mori, tr.config.mori.kernel_type) == CombineModel::internode_v1);
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  SimOptions o;
  o.numerics = Numerics::bf16;
  const auto sources = layer_sources(tr, 0, map, o);
  const Dispatch d = dispatch(map, 4, sources, o.dispatch);
  // Returned rows: 1, 2^-8, 2^-8, 0. bf16 has 2^-7 spacing at 1, so 1 + 2^-8 ties to 1.
  const float back[4] = {1.0f, 0x1p-8f, 0x1p-8f, 0.0f};
  std::vector<RankRun> runs(4);
  for (int r = 0; r < 4; ++r) {
    runs[r].expert_rows.wide = false;
    runs[r].expert_rows.f32.assign(2, back[r]);
  }
  o.combine = CombineModel::rank_sum;
  run_combine(tr, 0, wp, map, sources, d, o, runs);
  CHECK(runs[0].combine_out.f32[0] == 1.0f + 0x1p-7f);  // fp32 sum 1 + 2^-7, rounded once
  o.combine = CombineModel::internode_v1;
  run_combine(tr, 0, wp, map, sources, d, o, runs);
  CHECK(runs[0].combine_out.f32[0] == 1.0f);  // node 0: bf16(1 + 2^-8) = 1; node 1: 2^-8; bf16(1 + 2^-8) = 1
}

TEST_CASE("rank-sum's order is the library's: MORI first slot, DeepEP V1 ascending rank, DeepEP V2 last slot") {
  test::TraceShape shape;
  shape.tokens = {1, 0, 0, 0};
  shape.hidden = 2;
  Trace tr = test::make_trace(shape);
  // Slots go to ranks 1, 2, 0, 1: first-slot order 1, 2, 0; ascending 0, 1, 2; last-slot 2, 0, 1.
  tr.layers[0].ranks[0].topk_ids = {4, 8, 0, 5};
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  // Returned rows chosen so that each order rounds differently in float32:
  //   (-2^-24 + (1 + 2^-23)) ties to 1, + -1 = 0;  (-1 + -2^-24) ties to -1, + (1 + 2^-23) = 2^-23;
  //   ((1 + 2^-23) + -1) = 2^-23, + -2^-24 = 2^-24.
  const float back[4] = {-1.0f, -0x1p-24f, 1.0f + 0x1p-23f, 0.0f};
  auto combined = [&](DispatchModel d, DeepepVersion v) {
    SimOptions o;
    o.numerics = Numerics::fp32;
    o.dispatch.model = d;
    o.deepep_version = v;
    const auto sources = layer_sources(tr, 0, map, o);
    const Dispatch disp = dispatch(map, 4, sources, o.dispatch);
    std::vector<RankRun> runs(4);
    for (int r = 0; r < 4; ++r) {
      REQUIRE(disp.ranks[r].total_recv == (r == 3 ? 0 : 1));
      runs[r].expert_rows.wide = false;
      runs[r].expert_rows.f32.assign(2 * disp.ranks[r].total_recv, back[r]);
    }
    run_combine(tr, 0, wp, map, sources, disp, o, runs);
    CHECK(runs[0].combine_out.f32[0] == runs[0].combine_out.f32[1]);
    return runs[0].combine_out.f32[0];
  };
  CHECK(rank_order(DispatchModel::mori, DeepepVersion::v2) == RankOrder::first_slot);
  CHECK(combined(DispatchModel::mori, DeepepVersion::v1) == 0.0f);
  CHECK(combined(DispatchModel::deepep_ht, DeepepVersion::v1) == 0x1p-23f);
  CHECK(combined(DispatchModel::deepep_ht, DeepepVersion::v2) == 0x1p-24f);
}

TEST_CASE("MORI combine's output weights: each distinct rank's weight row summed in float32, not w x ranks") {
  test::TraceShape shape;
  shape.ranks = 8;
  shape.experts = 16;
  shape.top_k = 7;
  shape.tokens = {1, 0, 0, 0, 0, 0, 0, 0};
  Trace tr = test::make_trace(shape);
  // Ranks 3, 1, 3, 0, 4, 6, 7: six distinct, so six additions of w. With w = 0x1.1f0c22p-1 they give
  // 0x1.ae9232p+1, one ulp under fl(6 * w) = 0x1.ae9234p+1.
  tr.layers[0].ranks[0].topk_ids = {6, 2, 7, 0, 9, 12, 14};
  tr.layers[0].ranks[0].topk_weights.assign(7, 0x1.1f0c22p-1f);
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  SimOptions o;
  o.numerics = Numerics::fp32;
  const LayerRun run = simulate_layer(tr, 0, wp, map, o);
  REQUIRE(run.ranks[0].combine_weights.size() == 7);
  for (float w : run.ranks[0].combine_weights) CHECK(w == 0x1.ae9232p+1f);
  CHECK(0x1.ae9232p+1f != 6.0f * 0x1.1f0c22p-1f);
  for (int r = 1; r < 8; ++r) CHECK(run.ranks[r].combine_weights.empty());  // no tokens there
  o.dispatch.model = DispatchModel::deepep_ht;
  CHECK(simulate_layer(tr, 0, wp, map, o).ranks[0].combine_weights.empty());
}

TEST_CASE("a trace's library_settings pick the DeepEP version; anything but v1 or v2 names the file") {
  Trace tr;
  tr.path = "cap.h5";
  CHECK(default_deepep_version(tr) == DeepepVersion::v1);
  tr.config.library_settings["deepep_version"] = "v2";
  CHECK(default_deepep_version(tr) == DeepepVersion::v2);
  tr.config.library_settings["deepep_version"] = "2.1.0";
  CHECK_THROWS_WITH_AS(default_deepep_version(tr),
                       "cap.h5: /config/library_settings: unknown deepep version '2.1.0' (expected v1, v2)", Error);
}

TEST_CASE("EPLB with logical ids: every replica policy matches the reference, same-rank keeps traffic local") {
  test::TraceShape shape;
  shape.hidden = 16;
  shape.tokens = {20, 20, 20, 20};
  shape.minus_one_rate = 0;
  Trace tr = test::make_trace(shape);
  // 16 physical slots over 4 ranks hold 4 logical experts, each replicated once on every rank.
  TraceConfig& c = tr.config;
  c.placement.kind = PlacementKind::eplb;
  c.placement.num_logical = 4;
  for (int e = 0; e < 16; ++e) c.placement.physical_to_logical[e] = e % 4;
  for (auto& rank : tr.layers[0].ranks)
    for (auto& id : rank.topk_ids) id %= 4;  // logical ids, duplicates allowed within a token
  const ExpertMap map = make_expert_map(c);
  const WeightProvider wp(tr);
  std::int64_t off_rank[3] = {0, 0, 0};
  double imbalance[3] = {0, 0, 0};
  int i = 0;
  for (auto policy : {ReplicaPolicy::first, ReplicaPolicy::round_robin, ReplicaPolicy::same_rank}) {
    CAPTURE(name(policy));
    SimOptions o;
    o.numerics = Numerics::exact;
    o.logical_ids = true;
    o.replica = policy;
    const Trace physical = with_physical_ids(tr, map, o);
    const WeightProvider pwp(physical);
    ReferenceOptions ro;
    const LayerOutputs ref = run_layer(physical, 0, pwp, ro);
    const LayerRun run = simulate_layer(tr, 0, wp, map, o);
    CHECK(compare_final(run, ref, physical, 0, Numerics::exact, o.combine).bad_tokens == 0);
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b)
        if (a != b) off_rank[i] += run.stats.dispatch_bytes[a * 4 + b];
    imbalance[i] = RoutingStats::imbalance(run.stats.rows_per_rank);
    ++i;
  }
  CHECK(off_rank[2] == 0);           // a replica on every rank: nothing leaves it
  CHECK(off_rank[0] > 0);
  CHECK(imbalance[0] == 4.0);  // first piles every row onto rank 0's copies
  CHECK(imbalance[1] < 1.5);   // round-robin spreads them
}

TEST_CASE("the seed's 64x: all-k on 8 rows per token computes K x 8 per distinct source token") {
  GenOptions g;  // every token's 8 experts on rank 0: rank 0 gets 8 rows per token, as the seed's log shows
  g.num_ranks = 8;
  g.num_experts = 256;
  g.top_k = 8;
  g.hidden = 128;
  g.intermediate = 16;
  g.tokens_per_rank = 16;
  g.routing = Routing::all_to_one;
  const Trace tr = generate(g);
  SimOptions o = options_for({DispatchModel::pairs, ConsumerModel::all_k, CombineModel::rank_sum}, Numerics::exact);
  const ExpertMap map = make_expert_map(tr.config);
  const RoutingStats s = routing_stats(stats_input(tr.config, map, o), layer_sources(tr, 0, map, o));
  CHECK(s.rows_per_rank[0] == 8 * 16 * 8);
  CHECK(s.duplication() == 8.0);
  CHECK(s.total_performed() / s.total_sources() == 64);  // the seed's 524288 / 8192
  CHECK(s.waste() == 8.0);                                // against the pairs actually needed
}
