#pragma once
// The verdict matrix's fixture (test_verdict_matrix.cpp, test_verdict_small_bugs.cpp): generated
// traces of several shapes with their golden files in every mode, run files of candidates, and
// the stage a bug first changes in exact arithmetic, found independently of the bound: the first
// stage whose values it moves by more than 1e-9 of their largest magnitude (a reordered float64
// sum moves them by 1e-16).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

#include "bisect.hpp"
#include "diagnose.hpp"
#include "diagnose/diagnose_fixtures.hpp"
#include "diff.hpp"
#include "error.hpp"
#include "generate.hpp"
#include "golden.hpp"
#include "run_file.hpp"
#include "trace_io.hpp"
#include "transport_check.hpp"

namespace moesim::test::verdict {

using namespace moesim::sim;

inline const Numerics kModes[] = {Numerics::exact, Numerics::fp32, Numerics::bf16, Numerics::fp8};

struct Variant {
  std::string name;
  GenOptions g;
  bool on_input = false;
  std::string kernel = "IntraNode";   // MORI's kernel type (InterNodeV1: per-node combine)
  std::int64_t max_total_recv = 0;   // MORI's receive capacity (0: unset)
};

inline std::vector<Variant> variants() {
  std::vector<Variant> v;
  GenOptions base;
  base.hidden = 64;
  base.intermediate = 32;
  base.tokens_per_rank = 8;
  base.tokens_max = 12;
  base.sentinel_rate = 0.1;
  base.store_weights = true;
  {
    Variant a{"bf16 tokens, silu_and_mul", base};
    v.push_back(a);
  }
  {
    Variant b{"f32 tokens and weights, gelu_and_mul, sigmoid, 1 shared, scaling 2.5", base};
    b.g.seed = 2;
    b.g.token_dtype = DType::f32;
    b.g.weight_dtype = DType::f32;
    b.g.activation = Activation::gelu_erf_gated;
    b.g.scoring = Scoring::sigmoid;
    b.g.num_shared_experts = 1;
    b.g.routed_scaling_factor = 2.5;
    v.push_back(b);
  }
  {
    Variant c{"fp8 tokens, plain silu, router weight on input, 2 shared", base};
    c.g.seed = 3;
    c.g.token_dtype = DType::e4m3;
    c.g.activation = Activation::silu;
    c.g.num_shared_experts = 2;
    c.g.shared_intermediate = 16;
    c.on_input = true;
    v.push_back(c);
  }
  {
    Variant d{"8 ranks, 64 experts, top-8, H 256, grouped, gelu_tanh_and_mul", base};
    d.g.seed = 4;
    d.g.num_ranks = 8;
    d.g.num_experts = 64;
    d.g.top_k = 8;
    d.g.hidden = 256;
    d.g.intermediate = 32;
    d.g.tokens_per_rank = 4;
    d.g.tokens_max = 8;
    d.g.routing = Routing::grouped;
    d.g.activation = Activation::gelu_tanh_gated;
    d.g.sentinel_rate = 0.05;
    v.push_back(d);
  }
  {
    Variant e{"MORI InterNodeV1 (2 ranks a node), receive capacity 16 rows", base};
    e.g.seed = 5;
    e.kernel = "InterNodeV1";
    e.max_total_recv = 16;
    v.push_back(e);
  }
  return v;
}

// Per process: ctest runs the test cases side by side, each with its own fixture.
inline std::string tmp(const std::string& leaf) {
  return std::string(MOESIM_TEST_TMP) + "/verdict-" + std::to_string(::getpid()) + "-" + leaf;
}

inline Trace written(const Variant& v, const std::string& path) {
  Trace t = generate(v.g);
  t.config.router_weight_on_input = v.on_input;
  t.config.mori.kernel_type = v.kernel;
  t.config.mori.gpus_per_node = 2;
  t.config.mori.max_total_recv_tokens = v.max_total_recv;
  write_trace(t, path);
  return read_trace(path);
}

inline SimOptions correct_options(const TraceConfig& c, DispatchModel d, Numerics n) {
  SimOptions o;
  o.dispatch.model = d;
  o.consumer.model = default_consumer(d);
  o.combine = default_combine(d, c.mori.kernel_type);
  o.numerics = n;
  return o;
}

// A change in exact arithmetic, beyond the 1e-16 of a reordered float64 sum.
inline bool changed(const Values& a, const Values& b) {
  if (a.size() != b.size()) return true;
  double d = 0, m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i])), m = std::max(m, std::fabs(b[i]));
  return d > 1e-9 * m;
}

// The first stage a bug changes (golden layout: expert_out, final_out).
inline diff::Stage first_changed(const std::vector<RankRun>& a, const std::vector<RankRun>& b) {
  for (std::size_t r = 0; r < a.size(); ++r)
    if (changed(a[r].expert_out, b[r].expert_out)) return diff::Stage::expert;
  for (std::size_t r = 0; r < a.size(); ++r)
    if (changed(a[r].final_out, b[r].final_out)) return diff::Stage::final_;
  return diff::Stage::other;  // no output changes
}

// The same over every stage of two simulated runs (bisect's own comparison); dispatch copies
// are compared bit for bit.
inline diff::Stage first_changed(const LayerRun& a, const LayerRun& b) {
  for (std::size_t r = 0; r < a.ranks.size(); ++r) {
    const RecvBuffer &x = a.dispatch.ranks[r], &y = b.dispatch.ranks[r];
    if (x.total_recv != y.total_recv || x.src_rank != y.src_rank || x.src_token != y.src_token || x.ids != y.ids ||
        x.weights != y.weights || x.target != y.target || x.src_pos != y.src_pos)
      return diff::Stage::dispatch;
  }
  for (std::size_t r = 0; r < a.ranks.size(); ++r)
    if (changed(a.ranks[r].expert_rows, b.ranks[r].expert_rows) || changed(a.ranks[r].expert_out, b.ranks[r].expert_out))
      return diff::Stage::expert;
  for (std::size_t r = 0; r < a.ranks.size(); ++r)
    if (changed(a.ranks[r].combine_out, b.ranks[r].combine_out)) return diff::Stage::combine;
  for (std::size_t r = 0; r < a.ranks.size(); ++r)
    if (changed(a.ranks[r].final_out, b.ranks[r].final_out)) return diff::Stage::final_;
  return diff::Stage::other;
}

struct Seen {
  bool different = false;
  diff::Stage stage = diff::Stage::other;
  double worst = 0;  // of the bound
  std::string verdict;
  // When the first divergence is a transported value: the source token and slot it names.
  bool transported = false;
  int src_rank = -1, slot = -1;
  std::int64_t src_token = -1;
};

inline Seen judge(const std::string& a, const std::string& b, const Trace& routing) {
  diff::Options o;
  o.routing = &routing;
  const diff::Result r = compare_files(a, b, o);  // the verdict diff gives: the bound and transported values
  Seen s;
  s.different = r.different();
  s.worst = r.worst.ratio;
  s.verdict = r.verdict();
  for (const auto& d : r.divergences())
    if (d.layer >= 0) {
      s.stage = d.stage;
      for (const auto& t : r.transported)
        if (t.path == d.path && t.what == d.what)
          s.transported = true, s.src_rank = t.src_rank, s.src_token = t.src_token, s.slot = t.slot;
      break;
    }
  return s;
}

// Whether a run's dispatch differs from what its model delivers for `routing`, compared field by
// field in canonical order (the runs judged with it are not shuffled), independently of the
// transported-value check: where it does, that check must report stage dispatch.
inline bool transport_changed(const Trace& routing, const Dispatch& d, DispatchModel model) {
  const ExpertMap map = make_expert_map(routing.config);
  DispatchOptions o;
  o.model = model;
  o.max_tokens_per_rank = d.max_tokens;
  o.overflow = Overflow::drop;
  const Dispatch want = dispatch(map, routing.config.top_k, layer_sources(routing, 0, map, SimOptions{}), o);
  auto bits = [](const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  };
  for (std::size_t r = 0; r < d.ranks.size(); ++r) {
    const RecvBuffer &x = d.ranks[r], &y = want.ranks[r];
    if (x.total_recv != y.total_recv || x.src_rank != y.src_rank || x.src_token != y.src_token || x.ids != y.ids ||
        bits(x.weights) != bits(y.weights))
      return true;
  }
  return false;
}

// A run's outputs alone, in the golden layout: a candidate that records no dispatch buffers.
inline void write_outputs_only(const std::string& path, const Trace& t, const LayerRun& run, Numerics n) {
  LayerOutputs lo;
  lo.layer_index = run.layer_index;
  for (std::size_t r = 0; r < run.ranks.size(); ++r)
    lo.ranks.push_back({t.layers[0].ranks[r].num_tokens, run.ranks[r].final_out, run.ranks[r].expert_out});
  write_golden(path, t, {lo}, n, "test candidate (outputs only)");
}

inline void write_candidate(const std::string& path, const Trace& t, const std::vector<RankRun>& ranks, const Dispatch& d,
                     const SimOptions& o) {
  const ExpertMap map = make_expert_map(t.config);
  LayerRun run;
  run.layer_index = t.layers[0].index;
  run.dispatch = d;
  run.ranks = ranks;
  run.stats = routing_stats(stats_input(t.config, map, o), layer_sources(t, 0, map, o), &run.dispatch);
  write_run(path, t, {run}, {o, judge_pairing(o.dispatch.model, o.consumer, o.combine), "test candidate"});
}

inline std::string golden_path(int v, Numerics n) { return tmp(std::to_string(v) + "-golden-" + std::string(name(n)) + ".h5"); }

// One trace per variant, and its golden file in every mode.
struct Fixture {
  std::vector<Variant> vs = variants();
  std::vector<Trace> traces;
  ~Fixture() {  // this process's files
    const std::string mine = "verdict-" + std::to_string(::getpid()) + "-";
    for (const auto& e : std::filesystem::directory_iterator(MOESIM_TEST_TMP))
      if (e.path().filename().string().rfind(mine, 0) == 0) std::filesystem::remove(e.path());
  }
  Fixture() {
    for (std::size_t v = 0; v < vs.size(); ++v) {
      traces.push_back(written(vs[v], tmp(std::to_string(v) + ".h5")));
      for (Numerics n : kModes) {
        ReferenceOptions ro;
        ro.numerics = n;
        write_golden(golden_path(static_cast<int>(v), n), traces.back(), run_reference(traces.back(), ro), n, "test");
      }
    }
  }
};
inline const Fixture& fixture() {
  static const Fixture f;
  return f;
}

inline Origin identity(const Trace& t) {
  Origin o(1);
  for (std::size_t r = 0; r < t.layers[0].ranks.size(); ++r) {
    o[0].emplace_back();
    for (std::int64_t i = 0; i < t.layers[0].ranks[r].num_tokens; ++i) o[0].back().push_back({static_cast<int>(r), i});
  }
  return o;
}

}  // namespace moesim::test::verdict
