// The generator: same options give the same bytes, and each routing pattern, placement and
// weight rule has its defining property.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "error.hpp"
#include "generate.hpp"
#include "test_files.hpp"
#include "trace_io.hpp"
#include "expert_weights.hpp"

using namespace moesim;
using moesim::test::tmp;
using moesim::test::bytes_of;

namespace {
GenOptions big(Routing routing) {
  GenOptions o;
  o.num_ranks = 8;
  o.num_experts = 64;
  o.top_k = 6;
  o.hidden = 16;
  o.intermediate = 8;
  o.tokens_per_rank = 256;
  o.routing = routing;
  return o;
}

// Every (layer, rank, token) row of ids, -1 included.
template <class F>
void each_row(const Trace& t, F f) {
  const int K = t.config.top_k;
  for (const auto& layer : t.layers)
    for (std::size_t r = 0; r < layer.ranks.size(); ++r)
      for (std::int64_t i = 0; i < layer.ranks[r].num_tokens; ++i)
        f(static_cast<int>(r), i, layer.ranks[r].topk_ids.data() + i * K, layer.ranks[r].topk_weights.data() + i * K);
}

std::vector<double> expert_load(const Trace& t) {
  std::vector<double> load(t.config.num_experts, 0.0);
  each_row(t, [&](int, std::int64_t, const std::int32_t* ids, const float*) {
    for (int k = 0; k < t.config.top_k; ++k)
      if (ids[k] >= 0) load[ids[k]] += 1.0;
  });
  return load;
}

double top_share(const Trace& t) {
  auto load = expert_load(t);
  double total = 0.0;
  for (double v : load) total += v;
  return *std::max_element(load.begin(), load.end()) / total;
}

bool has_duplicate(const std::int32_t* ids, int K) {
  for (int a = 0; a < K; ++a)
    for (int b = a + 1; b < K; ++b)
      if (ids[a] >= 0 && ids[a] == ids[b]) return true;
  return false;
}
}  // namespace

TEST_CASE("same options give the same bytes; another seed gives other routing and tensors") {
  GenOptions o;
  o.store_weights = true;
  Trace a = generate(o), b = generate(o);
  a.command = b.command = "moesim gen -o same.h5";
  write_trace(a, tmp("gen_same_a.h5"));
  write_trace(b, tmp("gen_same_b.h5"));
  CHECK(bytes_of(tmp("gen_same_a.h5")) == bytes_of(tmp("gen_same_b.h5")));
  o.seed = 2;
  Trace c = generate(o);
  CHECK(c.layers[0].ranks[0].topk_ids != a.layers[0].ranks[0].topk_ids);
  CHECK(c.layers[0].ranks[0].x != a.layers[0].ranks[0].x);
  CHECK(c.layers[0].weights->w1 != a.layers[0].weights->w1);
  // Layers and ranks draw from their own streams.
  o.num_layers = 2;
  Trace d = generate(o);
  CHECK(d.layers[0].ranks[0].topk_ids != d.layers[1].ranks[0].topk_ids);
  CHECK(d.layers[0].ranks[0].topk_ids != d.layers[0].ranks[1].topk_ids);
}

TEST_CASE("the default trace is small, valid and reads back") {
  Trace t = generate(GenOptions{});
  t.command = "moesim gen -o default.h5";
  write_trace(t, tmp("gen_default.h5"));
  ReadReport report;
  const Trace back = read_trace(tmp("gen_default.h5"), {}, &report);
  CHECK(report.warnings.empty());
  CHECK(back.config.num_ranks == 4);
  CHECK(back.layers[0].ranks[3].x == t.layers[0].ranks[3].x);
  CHECK(back.layers[0].ranks[3].topk_ids == t.layers[0].ranks[3].topk_ids);
  CHECK_FALSE(back.layers[0].weights.has_value());  // generated from the seed by default
}

TEST_CASE("uniform: distinct ids in range, every expert used about equally") {
  const Trace t = generate(big(Routing::uniform));
  each_row(t, [&](int, std::int64_t, const std::int32_t* ids, const float*) {
    CHECK_FALSE(has_duplicate(ids, 6));
    for (int k = 0; k < 6; ++k) CHECK((ids[k] >= 0 && ids[k] < 64));
  });
  // 8 * 256 * 6 picks over 64 experts: 192 each; 5 sigma of a binomial is about 68.
  for (double v : expert_load(t)) CHECK(std::fabs(v - 192.0) < 68.0);
}

TEST_CASE("zipf: skew grows with its parameter") {
  std::vector<double> shares;
  for (double s : {0.0, 0.5, 1.0, 2.0}) {
    GenOptions o = big(Routing::zipf);
    o.zipf_s = s;
    const Trace t = generate(o);
    each_row(t, [&](int, std::int64_t, const std::int32_t* ids, const float*) { CHECK_FALSE(has_duplicate(ids, 6)); });
    shares.push_back(top_share(t));
  }
  CHECK(shares[0] < 1.5 / 64);  // s = 0 is uniform
  for (std::size_t i = 1; i < shares.size(); ++i) CHECK(shares[i] > shares[i - 1]);
}

TEST_CASE("grouped: every token's experts lie in at most topk_group groups") {
  GenOptions o = big(Routing::grouped);
  o.n_group = 8;
  o.topk_group = 2;
  o.scoring = Scoring::sigmoid;
  const Trace t = generate(o);
  int max_groups = 0;
  each_row(t, [&](int, std::int64_t, const std::int32_t* ids, const float*) {
    std::set<int> groups;
    for (int k = 0; k < 6; ++k) groups.insert(ids[k] / 8);
    max_groups = std::max(max_groups, static_cast<int>(groups.size()));
    CHECK_FALSE(has_duplicate(ids, 6));
  });
  CHECK(max_groups == 2);
  // Without the group limit the same shape spreads over more groups, so the check above can fail.
  const Trace u = generate(big(Routing::uniform));
  int u_max = 0;
  each_row(u, [&](int, std::int64_t, const std::int32_t* ids, const float*) {
    std::set<int> groups;
    for (int k = 0; k < 6; ++k) groups.insert(ids[k] / 8);
    u_max = std::max(u_max, static_cast<int>(groups.size()));
  });
  CHECK(u_max > 2);
}

TEST_CASE("hot: hot experts carry far more than their share") {
  GenOptions o = big(Routing::hot);
  o.num_hot = 2;
  o.hot_factor = 20.0;
  const Trace t = generate(o);
  auto load = expert_load(t);
  std::sort(load.begin(), load.end(), std::greater<>());
  CHECK(load[1] > 5.0 * load[2]);  // the two hot experts stand apart from the rest
}

TEST_CASE("all_to_one: every id lives on rank 0, under any placement") {
  for (PlacementKind p : {PlacementKind::contiguous, PlacementKind::explicit_map}) {
    GenOptions o = big(Routing::all_to_one);
    o.placement = p;
    const Trace t = generate(o);
    each_row(t, [&](int, std::int64_t, const std::int32_t* ids, const float*) {
      for (int k = 0; k < 6; ++k) CHECK(t.config.rank_of(ids[k]) == 0);
      CHECK_FALSE(has_duplicate(ids, 6));
    });
  }
  GenOptions o = big(Routing::all_to_one);
  o.top_k = 9;  // rank 0 holds 8 experts
  CHECK_THROWS_WITH(generate(o), "--top-k: 9 exceeds the 8 experts on rank 0 (all_to_one)");
}

TEST_CASE("round_robin: slot j of token t on rank r is ((r * max_tokens + t) * K + j) mod E") {
  GenOptions o = big(Routing::round_robin);
  o.tokens_per_rank = 5;
  o.tokens_max = 9;
  const Trace t = generate(o);
  const auto maxT = t.config.mori.max_num_inp_token_per_rank;
  CHECK(maxT >= 5);
  each_row(t, [&](int r, std::int64_t i, const std::int32_t* ids, const float*) {
    for (int k = 0; k < 6; ++k) CHECK(ids[k] == ((r * maxT + i) * 6 + k) % 64);
  });
}

TEST_CASE("spread: slot j goes to rank j mod R, so a token reaches min(K, R) ranks") {
  for (int K : {6, 8, 12}) {
    GenOptions o = big(Routing::spread);
    o.top_k = K;
    const Trace t = generate(o);
    each_row(t, [&](int, std::int64_t, const std::int32_t* ids, const float*) {
      std::set<int> ranks;
      for (int k = 0; k < K; ++k) {
        CHECK(t.config.rank_of(ids[k]) == k % 8);
        ranks.insert(t.config.rank_of(ids[k]));
      }
      CHECK(static_cast<int>(ranks.size()) == std::min(K, 8));
      CHECK_FALSE(has_duplicate(ids, K));
    });
  }
}

TEST_CASE("sentinels: -1 at the requested rate, with weight 0") {
  GenOptions o = big(Routing::uniform);
  o.sentinel_rate = 0.25;
  const Trace t = generate(o);
  double n = 0, neg = 0;
  each_row(t, [&](int, std::int64_t, const std::int32_t* ids, const float* w) {
    for (int k = 0; k < 6; ++k) {
      n += 1;
      if (ids[k] == -1) {
        neg += 1;
        CHECK(w[k] == 0.0f);
      }
    }
  });
  // 12288 slots: the binomial's sigma is about 38 slots, 0.3% of the rate.
  CHECK(std::fabs(neg / n - 0.25) < 0.02);
  o.sentinel_rate = 0.0;
  const Trace none = generate(o);
  each_row(none, [&](int, std::int64_t, const std::int32_t* ids, const float*) {
    for (int k = 0; k < 6; ++k) CHECK(ids[k] >= 0);
  });
}

TEST_CASE("token counts: fixed, or varying per rank within the range and equal across layers") {
  GenOptions o = big(Routing::uniform);
  o.tokens_per_rank = 3;
  o.tokens_max = 40;
  o.num_layers = 2;
  const Trace t = generate(o);
  std::set<std::int64_t> counts;
  for (int r = 0; r < 8; ++r) {
    const auto n = t.layers[0].ranks[r].num_tokens;
    CHECK((n >= 3 && n <= 40));
    CHECK(t.layers[1].ranks[r].num_tokens == n);
    CHECK(t.layers[0].ranks[r].topk_ids.size() == static_cast<std::size_t>(n * 6));
    CHECK(t.layers[0].ranks[r].x.size() == static_cast<std::size_t>(n * 16));
    counts.insert(n);
  }
  CHECK(counts.size() > 1);
  std::int64_t maxn = *counts.rbegin();
  CHECK(t.config.mori.max_num_inp_token_per_rank == maxn);
}

TEST_CASE("weights: softmax normalized sums to one; sigmoid unnormalized stays each in (0, 1)") {
  GenOptions o = big(Routing::uniform);
  const Trace soft = generate(o);
  each_row(soft, [&](int, std::int64_t, const std::int32_t*, const float* w) {
    double s = 0;
    for (int k = 0; k < 6; ++k) {
      s += w[k];
      CHECK(w[k] > 0.0f);
    }
    CHECK(std::fabs(s - 1.0) < 1e-6);
    for (int k = 1; k < 6; ++k) CHECK(w[k] <= w[k - 1]);  // slots in descending score order
  });
  o.scoring = Scoring::sigmoid;
  o.normalize = false;
  const Trace sig = generate(o);
  bool some_sum_not_one = false;
  each_row(sig, [&](int, std::int64_t, const std::int32_t*, const float* w) {
    double s = 0;
    for (int k = 0; k < 6; ++k) {
      CHECK((w[k] > 0.0f && w[k] < 1.0f));
      s += w[k];
    }
    if (std::fabs(s - 1.0) > 0.1) some_sum_not_one = true;
  });
  CHECK(some_sum_not_one);
  // Softmax unnormalized: the K weights are a part of a distribution over all experts.
  o.scoring = Scoring::softmax;
  const Trace part = generate(o);
  each_row(part, [&](int, std::int64_t, const std::int32_t*, const float* w) {
    double s = 0;
    for (int k = 0; k < 6; ++k) s += w[k];
    CHECK(s < 1.0);
  });
}

TEST_CASE("explicit placement: a seeded shuffle keeping E / R experts per rank") {
  GenOptions o = big(Routing::uniform);
  o.placement = PlacementKind::explicit_map;
  const Placement p = make_placement(o);
  CHECK(p.kind == PlacementKind::explicit_map);
  std::vector<int> per_rank(8, 0);
  for (int r : p.expert_to_rank) per_rank[r] += 1;
  for (int n : per_rank) CHECK(n == 8);
  CHECK(p.expert_to_rank != contiguous_placement(64, 8).expert_to_rank);
  o.seed = 5;
  CHECK(make_placement(o).expert_to_rank != p.expert_to_rank);
}

TEST_CASE("eplb: replicas share a logical expert; a token never picks one logical expert twice") {
  GenOptions o = big(Routing::uniform);
  o.placement = PlacementKind::eplb;
  o.num_logical = 40;
  o.store_weights = true;
  const Trace t = generate(o);
  const Placement& p = t.config.placement;
  CHECK(p.num_logical == 40);
  for (int e = 0; e < 64; ++e) CHECK(p.physical_to_logical[e] == e % 40);
  std::set<int> used;
  each_row(t, [&](int, std::int64_t, const std::int32_t* ids, const float*) {
    std::set<int> logical;
    for (int k = 0; k < 6; ++k) {
      logical.insert(p.physical_to_logical[ids[k]]);
      used.insert(ids[k]);
    }
    CHECK(logical.size() == 6u);
  });
  CHECK(used.count(0));
  CHECK(used.count(40));  // replica of logical 0 is used too
  CHECK(t.layers[0].weights->w1.size() == 40u * 16 * 16);  // weights per logical expert
  // And it survives the writer and the reader's placement checks.
  Trace w = t;
  w.command = "eplb";
  write_trace(w, tmp("gen_eplb.h5"));
  const Trace back = read_trace(tmp("gen_eplb.h5"));
  CHECK(back.config.placement.physical_to_logical == p.physical_to_logical);
}

TEST_CASE("stored weights equal the ones generated from the spec; shared experts included") {
  GenOptions o;
  o.num_shared_experts = 1;
  o.shared_intermediate = 24;
  o.store_weights = true;
  o.weight_spec.distribution = "normal";
  const Trace t = generate(o);
  const ExpertWeights& w = *t.layers[0].weights;
  CHECK(w.shared_w1.size() == 2u * 24 * 128);
  CHECK(w.shared_w2.size() == 128u * 24);
  std::vector<float> w1(2 * 64 * 128), w2(128 * 64);
  generate_expert(t.config, t.weight_spec, 0, 3, false, w1.data(), w2.data());
  CHECK(std::equal(w1.begin(), w1.end(), w.w1.begin() + 3 * w1.size()));
  CHECK(std::equal(w2.begin(), w2.end(), w.w2.begin() + 3 * w2.size()));
  // Values are bf16 with standard deviation scale / sqrt(fan_in).
  double ss = 0;
  for (float v : w.w1) {
    CHECK(round_bf16(v) == v);
    ss += double(v) * v;
  }
  const double sd = std::sqrt(ss / double(w.w1.size()));
  CHECK(std::fabs(sd * std::sqrt(128.0) - 1.0) < 0.02);
}

TEST_CASE("x generated from the seed when not stored, the same values either way") {
  GenOptions o;
  o.token_dtype = DType::e4m3;
  const Trace stored = generate(o);
  o.store_x = false;
  Trace seeded = generate(o);
  CHECK(seeded.layers[0].ranks[2].x.empty());
  seeded.command = "seeded";
  write_trace(seeded, tmp("gen_seeded_x.h5"));
  const Trace back = read_trace(tmp("gen_seeded_x.h5"));
  REQUIRE(back.x_spec.has_value());
  CHECK(back.layers[0].ranks[2].x == stored.layers[0].ranks[2].x);
  CHECK(back.layers[0].ranks[2].x_scales == stored.layers[0].ranks[2].x_scales);
  CHECK_FALSE(stored.layers[0].ranks[2].x_scales.empty());
}

TEST_CASE("bad options name the option") {
  GenOptions o;
  o.num_experts = 10;
  CHECK_THROWS_WITH(generate(o), "--experts: 10 is not a multiple of --ranks 4");
  o = GenOptions{};
  o.routing = Routing::grouped;
  o.n_group = 3;
  CHECK_THROWS_WITH(generate(o), "--groups: 3 does not divide the 16 logical experts");
  o = GenOptions{};
  o.sentinel_rate = 1.5;
  CHECK_THROWS_WITH(generate(o), "--sentinel-rate: must lie in [0, 1]");
  o = GenOptions{};
  o.token_dtype = DType::i32;
  CHECK_THROWS_WITH(generate(o), "--token-dtype: must be fp32, bf16, fp8 or fp8_fnuz");
  CHECK_THROWS_WITH(parse_routing("random"),
                    "unknown routing 'random' (expected uniform, zipf, grouped, hot, all_to_one, round_robin, spread)");
}
