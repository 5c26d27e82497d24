// The verdict matrix (reference/NUMERICS.md, "How far two results may differ"): with the default
// criterion, every golden mode x run mode of every correct pairing agrees (no false alarm), and
// every bug model of diagnose's catalog plus four small bugs is reported at the stage where it
// first changes a value, by diff (run file against golden) and by bisect alike. The stage a bug
// must be reported at is found independently of the bound: the first stage whose values the bug
// changes in exact arithmetic by more than 1e-9 of their largest magnitude (float64 reordering
// moves them by 1e-16). Figures go to stdout (ctest -V -R verdict shows them).
#include <doctest/doctest.h>
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

using namespace moesim;
using namespace moesim::sim;

namespace {

const Numerics kModes[] = {Numerics::exact, Numerics::fp32, Numerics::bf16, Numerics::fp8};

struct Variant {
  std::string name;
  GenOptions g;
  bool on_input = false;
  std::string kernel = "IntraNode";   // MORI's kernel type (InterNodeV1: per-node combine)
  std::int64_t max_total_recv = 0;   // MORI's receive capacity (0: unset)
};

std::vector<Variant> variants() {
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
std::string tmp(const std::string& leaf) {
  return std::string(MOESIM_TEST_TMP) + "/verdict-" + std::to_string(::getpid()) + "-" + leaf;
}

Trace written(const Variant& v, const std::string& path) {
  Trace t = generate(v.g);
  t.config.router_weight_on_input = v.on_input;
  t.config.mori.kernel_type = v.kernel;
  t.config.mori.gpus_per_node = 2;
  t.config.mori.max_total_recv_tokens = v.max_total_recv;
  write_trace(t, path);
  return read_trace(path);
}

SimOptions correct_options(const TraceConfig& c, DispatchModel d, Numerics n) {
  SimOptions o;
  o.dispatch.model = d;
  o.consumer.model = default_consumer(d);
  o.combine = default_combine(d, c.mori.kernel_type);
  o.numerics = n;
  return o;
}

// A change in exact arithmetic, beyond the 1e-16 of a reordered float64 sum.
bool changed(const Values& a, const Values& b) {
  if (a.size() != b.size()) return true;
  double d = 0, m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i])), m = std::max(m, std::fabs(b[i]));
  return d > 1e-9 * m;
}

// The first stage a bug changes (golden layout: expert_out, final_out).
diff::Stage first_changed(const std::vector<RankRun>& a, const std::vector<RankRun>& b) {
  for (std::size_t r = 0; r < a.size(); ++r)
    if (changed(a[r].expert_out, b[r].expert_out)) return diff::Stage::expert;
  for (std::size_t r = 0; r < a.size(); ++r)
    if (changed(a[r].final_out, b[r].final_out)) return diff::Stage::final_;
  return diff::Stage::other;  // no output changes
}

// The same over every stage of two simulated runs (bisect's own comparison); dispatch copies
// are compared bit for bit.
diff::Stage first_changed(const LayerRun& a, const LayerRun& b) {
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
};

Seen judge(const std::string& a, const std::string& b, const Trace& routing) {
  diff::Options o;
  o.routing = &routing;
  const diff::Result r = diff::run(a, b, o);
  Seen s;
  s.different = r.different();
  s.worst = r.worst.ratio;
  s.verdict = r.verdict();
  for (const auto& d : r.divergences())
    if (d.layer >= 0) {
      s.stage = d.stage;
      break;
    }
  return s;
}

void write_candidate(const std::string& path, const Trace& t, const std::vector<RankRun>& ranks, const Dispatch& d,
                     const SimOptions& o) {
  const ExpertMap map = make_expert_map(t.config);
  LayerRun run;
  run.layer_index = t.layers[0].index;
  run.dispatch = d;
  run.ranks = ranks;
  run.stats = routing_stats(stats_input(t.config, map, o), layer_sources(t, 0, map, o), &run.dispatch);
  write_run(path, t, {run}, {o, judge_pairing(o.dispatch.model, o.consumer, o.combine), "test candidate"});
}

std::string golden_path(int v, Numerics n) { return tmp(std::to_string(v) + "-golden-" + std::string(name(n)) + ".h5"); }

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
const Fixture& fixture() {
  static const Fixture f;
  return f;
}

Origin identity(const Trace& t) {
  Origin o(1);
  for (std::size_t r = 0; r < t.layers[0].ranks.size(); ++r) {
    o[0].emplace_back();
    for (std::int64_t i = 0; i < t.layers[0].ranks[r].num_tokens; ++i) o[0].back().push_back({static_cast<int>(r), i});
  }
  return o;
}

}  // namespace

TEST_CASE("no false alarm: every golden mode x run mode of every correct pairing is within the bound") {
  const Fixture& f = fixture();
  std::map<std::pair<int, int>, double> worst;  // (golden mode, run mode) -> worst ratio
  int pairs = 0, alarms = 0;
  for (std::size_t v = 0; v < f.vs.size(); ++v) {
    const Trace& t = f.traces[v];
    const ExpertMap map = make_expert_map(t.config);
    const WeightProvider wp(t);
    for (DispatchModel d : {DispatchModel::mori, DispatchModel::deepep_ht, DispatchModel::deepep_ll, DispatchModel::pplx,
                            DispatchModel::pairs})
      for (Numerics rn : kModes) {
        const SimOptions o = correct_options(t.config, d, rn);
        const std::string run = tmp(std::to_string(v) + "-run.h5");
        write_run(run, t, {simulate_layer(t, 0, wp, map, o)}, {o, judge_pairing(d, o.consumer, o.combine), "test"});
        for (Numerics gn : kModes) {
          CAPTURE(f.vs[v].name);
          CAPTURE(name(d));
          CAPTURE(name(rn));
          CAPTURE(name(gn));
          const Seen s = judge(run, golden_path(static_cast<int>(v), gn), t);
          CAPTURE(s.verdict);
          CHECK_FALSE(s.different);
          ++pairs;
          alarms += s.different;
          double& w = worst[{static_cast<int>(gn), static_cast<int>(rn)}];
          w = std::max(w, s.worst);
        }
      }
  }
  std::cout << "verdict matrix: " << pairs << " correct (run, golden) pairs, " << alarms << " false alarms\n"
            << "worst fraction of the bound used, golden mode (rows) x run mode (columns):\n        ";
  for (Numerics n : kModes) std::cout << " " << name(n) << "  ";
  for (Numerics g : kModes) {
    std::cout << "\n  " << name(g) << (g == Numerics::exact ? "" : std::string(5 - name(g).size(), ' '));
    for (Numerics n : kModes) {
      char b[16];
      std::snprintf(b, sizeof b, " %5.3f ", worst[{static_cast<int>(g), static_cast<int>(n)}]);
      std::cout << b;
    }
  }
  std::cout << "\n";
}

TEST_CASE("every bug model of diagnose's catalog is caught at the stage it first changes, by diff and bisect") {
  const Fixture& f = fixture();
  int cases = 0, missed = 0, no_effect = 0, simulated = 0, sim_missed = 0;
  std::map<std::string, std::array<int, 3>> per_model;  // key -> caught, no output effect, not applicable
    // Every variant but the 8-rank one (it adds files, not models: the false-alarm matrix has it).
  for (std::size_t v : {0, 1, 2, 4}) {
    const Trace& t = f.traces[v];
    const ExpertMap map = make_expert_map(t.config);
    const WeightProvider wp(t);
    // Where each model first changes a value, in exact arithmetic: against the golden layout, and
    // over every stage of a simulated run (bisect's comparison; -1: not a simulator configuration).
    const auto exact_hyps = catalog(t.config, DispatchModel::mori, SimOptions{});
    const Prediction exact_ok = predict(t, 0, exact_hyps[0], wp, map);
    const LayerRun exact_ref = simulate_layer(t, 0, wp, map, correct_options(t.config, DispatchModel::mori, Numerics::exact));
    std::vector<diff::Stage> wants(exact_hyps.size(), diff::Stage::other), sim_wants = wants;
    std::vector<bool> runs(exact_hyps.size(), false);
    for (std::size_t i = 1; i < exact_hyps.size(); ++i) try {
        const Prediction pe = predict(t, 0, exact_hyps[i], wp, map);
        runs[i] = pe.tested;
        wants[i] = first_changed(pe.ranks, exact_ok.ranks);
        if (exact_hyps[i].mutation == Mutation::none)
          sim_wants[i] = first_changed(simulate_layer(t, 0, wp, map, exact_hyps[i].options), exact_ref);
      } catch (const Error&) {
        runs[i] = false;  // the simulator rejects this configuration on this trace
      }
    for (Numerics n : kModes) {
      SimOptions base;
      base.numerics = n;
      const auto hyps = catalog(t.config, DispatchModel::mori, base);
      for (std::size_t i = 1; i < hyps.size(); ++i) {
        const Hypothesis& h = hyps[i];
        CAPTURE(f.vs[v].name);
        CAPTURE(name(n));
        CAPTURE(h.key);
        if (!runs[i]) {
          ++per_model[h.key][2];
          continue;
        }
        const Prediction p = predict(t, 0, h, wp, map);
        REQUIRE(p.tested);
        const diff::Stage want = wants[i];
        const std::string cand = tmp(std::to_string(v) + "-bug.h5");
        write_candidate(cand, t, p.ranks, p.dispatch, h.options);
        const Seen s = judge(cand, golden_path(static_cast<int>(v), n), t);
        const RecordedDivergence rec = locate_recorded(t, cand, n, {}, MOESIM_TEST_TMP);
        if (want == diff::Stage::other) {
          // Changes no output (a whole-buffer read of zeroed rows, -1 slots of weight 0 sent to
          // rank 0, a fitted model without a capture to fit).
          ++no_effect;
          ++per_model[h.key][1];
          CHECK_FALSE(s.different);
          CHECK_FALSE(rec.first.found);
        } else {
          ++cases;
          per_model[h.key][0] += s.different && s.stage == want;
          CAPTURE(s.verdict);
          CHECK(s.different);
          CHECK(s.stage == want);
          CHECK(rec.first.found);
          CHECK(rec.first.stage == want);
          missed += !(s.different && s.stage == want && rec.first.found && rec.first.stage == want);
        }
        if (h.mutation != Mutation::none) continue;
        // A simulator configuration: bisect runs it against the correct pairing, stage by stage.
        BisectOptions bo;
        bo.candidate = h.options;
        bo.reference = correct_options(t.config, DispatchModel::mori, n);
        bo.work_dir = MOESIM_TEST_TMP;
        const diff::Stage sim_want = sim_wants[i];
        int tests = 0;
        const Divergence d = find_divergence(t, identity(t), bo, tests);
        CHECK(d.found == (sim_want != diff::Stage::other));
        if (d.found) CHECK(d.stage == sim_want);
        ++simulated;
        sim_missed += d.found != (sim_want != diff::Stage::other) || (d.found && d.stage != sim_want);
      }
    }
  }
  // The fitted models explain a capture: give each one a capture of the first trace that shows its bug.
  for (const std::string shows : {"a duplicated row", "a dropped row", "a warm-up batch"}) {
    const std::string key = shows == "a warm-up batch" ? "warmup-identical-tokens" : "rows-duplicated-or-dropped";
    const Trace& t = f.traces[0];
    const int H = t.config.hidden, K = t.config.top_k;
    Trace c = t;
    test::capture_run(c, correct_options(c.config, DispatchModel::mori, Numerics::exact), false);
    Captured& cap = c.layers[0].ranks[0].captured;
    if (shows == "a duplicated row") {  // the transport delivered rank 0's first row twice
      cap.recv_x.insert(cap.recv_x.end(), cap.recv_x.begin(), cap.recv_x.begin() + H);
      cap.recv_topk_ids.insert(cap.recv_topk_ids.end(), cap.recv_topk_ids.begin(), cap.recv_topk_ids.begin() + K);
      cap.recv_weights.insert(cap.recv_weights.end(), cap.recv_weights.begin(), cap.recv_weights.begin() + K);
      cap.src_token_pos.push_back(cap.src_token_pos.front());
      ++cap.total_recv, ++cap.rows;
      cap.buffer_rows = std::max(cap.buffer_rows, cap.total_recv);
    } else if (shows == "a dropped row") {  // rank 0's last row never arrived
      cap.recv_x.resize(cap.recv_x.size() - H);
      cap.recv_topk_ids.resize(cap.recv_topk_ids.size() - K);
      cap.recv_weights.resize(cap.recv_weights.size() - K);
      cap.src_token_pos.pop_back();
      --cap.total_recv, --cap.rows;
    } else {  // every received row is rank 0's first token: a warm-up batch
      const std::vector<float> row(c.layers[0].ranks[0].x.begin(), c.layers[0].ranks[0].x.begin() + H);
      for (auto& in : c.layers[0].ranks)
        for (std::int64_t i = 0; i < in.captured.rows; ++i) std::copy(row.begin(), row.end(), &in.captured.recv_x[i * H]);
    }
    const std::string cpath = tmp("0-capture.h5");
    write_trace(c, cpath);
    c = read_trace(cpath);
    const ExpertMap map = make_expert_map(c.config);
    const WeightProvider wp(c);
    auto hypothesis = [&](Numerics n) {
      SimOptions base;
      base.numerics = n;
      for (const Hypothesis& h : catalog(c.config, DispatchModel::mori, base))
        if (h.key == key) return h;
      throw Error("no hypothesis " + key);
    };
    const Prediction pe = predict(c, 0, hypothesis(Numerics::exact), wp, map);
    REQUIRE(pe.tested);
    SimOptions exact;
    const diff::Stage want = first_changed(pe.ranks, predict(c, 0, catalog(c.config, DispatchModel::mori, exact)[0], wp, map).ranks);
    for (Numerics n : kModes) {
      CAPTURE(shows);
      CAPTURE(name(n));
      const Hypothesis h = hypothesis(n);
      const Prediction p = predict(c, 0, h, wp, map);
      const std::string cand = tmp("0-fitted.h5");
      write_candidate(cand, c, p.ranks, p.dispatch, h.options);
      const Seen s = judge(cand, golden_path(0, n), t);
      const RecordedDivergence rec = locate_recorded(t, cand, n, {}, MOESIM_TEST_TMP);
      CAPTURE(s.verdict);
      if (want == diff::Stage::other) {  // the fitted rows change no output (combine reads each slot's own row)
        ++no_effect;
        ++per_model[key][1];
        CHECK_FALSE(s.different);
        CHECK_FALSE(rec.first.found);
        continue;
      }
      CHECK(s.different);
      CHECK(s.stage == want);
      CHECK(rec.first.found);
      CHECK(rec.first.stage == want);
      const bool ok = s.different && s.stage == want && rec.first.found && rec.first.stage == want;
      ++cases;
      missed += !ok;
      per_model[key][0] += ok;
    }
  }
  std::cout << "catalog bugs against the golden (diff, bisect --candidate): " << cases
            << " (variant, mode, model) cases with an output effect, " << missed << " missed or at a wrong stage; "
            << no_effect << " change no output, none reported\n"
            << "catalog bugs as simulator configurations (bisect): " << simulated << " cases, " << sim_missed
            << " missed or at a wrong stage\nper model (caught / no output effect / not applicable):\n";
  for (const auto& [key, n] : per_model) std::cout << "  " << key << ": " << n[0] << " / " << n[1] << " / " << n[2] << "\n";
  CHECK(cases > 0);
}

namespace {
enum class Small { wrong_expert, weight_off, scaling_twice, no_renormalization };
const char* small_name(Small s) {
  switch (s) {
    case Small::wrong_expert: return "one slot sent to the wrong expert";
    case Small::weight_off: return "one router weight off";
    case Small::scaling_twice: return "routed scaling applied twice";
    default: return "weight renormalization left out";
  }
}

// The trace a buggy integration effectively ran: rank 1, token 3, slot `slot` (a valid one).
Trace mutate(const Trace& t, const Variant& v, Small s, double delta) {
  Trace m = t;
  RankInput& in = m.layers[0].ranks[1];
  const int K = t.config.top_k;
  int slot = 0;
  while (in.topk_ids[3 * K + slot] < 0) ++slot;
  switch (s) {
    case Small::wrong_expert: {
      std::int32_t& id = in.topk_ids[3 * K + slot];
      for (int e = 0; e < t.config.num_experts; ++e) {
        const bool used = std::find(&in.topk_ids[3 * K], &in.topk_ids[3 * K] + K, e) != &in.topk_ids[3 * K] + K;
        if (!used) {
          id = e;
          break;
        }
      }
      break;
    }
    case Small::weight_off: in.topk_weights[3 * K + slot] *= static_cast<float>(1 + delta); break;
    case Small::scaling_twice: m.config.routed_scaling_factor *= m.config.routed_scaling_factor; break;
    case Small::no_renormalization: {
      GenOptions g = v.g;
      g.normalize = false;
      const Trace raw = generate(g);
      for (std::size_t r = 0; r < m.layers[0].ranks.size(); ++r)
        m.layers[0].ranks[r].topk_weights = raw.layers[0].ranks[r].topk_weights;
      break;
    }
  }
  return m;
}

// max |change| / max |output| over the changed tokens' final outputs, in exact arithmetic.
double relative_size(const LayerOutputs& a, const LayerOutputs& b) {
  double d = 0, m = 0;
  for (std::size_t r = 0; r < a.ranks.size(); ++r)
    for (std::size_t i = 0; i < a.ranks[r].final_out.size(); ++i) {
      d = std::max(d, std::fabs(a.ranks[r].final_out[i] - b.ranks[r].final_out[i]));
      m = std::max(m, std::fabs(b.ranks[r].final_out[i]));
    }
  return m > 0 ? d / m : d;
}
}  // namespace

TEST_CASE("small bugs: caught at the right stage by diff and bisect where they exceed the bound") {
  const Fixture& f = fixture();
  std::ostringstream report;
  for (std::size_t v = 0; v < f.vs.size(); ++v) {
    const Trace& t = f.traces[v];
    for (Small s : {Small::wrong_expert, Small::weight_off, Small::scaling_twice, Small::no_renormalization}) {
      if (s == Small::scaling_twice && t.config.routed_scaling_factor == 1.0) continue;  // nothing to apply twice
      const std::vector<double> deltas =
          s == Small::weight_off ? std::vector<double>{1e-2, 1e-4, 1e-6} : std::vector<double>{0};
      for (double delta : deltas) {
        Trace m = mutate(t, f.vs[v], s, delta);
        const std::string mpath = tmp(std::to_string(v) + "-mutated.h5");
        write_trace(m, mpath);
        m = read_trace(mpath);
        const ExpertMap map = make_expert_map(m.config);
        const WeightProvider wp(m);
        // Where the bug first changes a value, and by how much, in exact arithmetic.
        const LayerOutputs bad = run_layer(m, 0, wp, {}), good = run_layer(t, 0, WeightProvider(t), {});
        std::vector<RankRun> x(bad.ranks.size()), y(bad.ranks.size());
        for (std::size_t r = 0; r < x.size(); ++r) {
          x[r].expert_out = bad.ranks[r].expert_out, x[r].final_out = bad.ranks[r].final_out;
          y[r].expert_out = good.ranks[r].expert_out, y[r].final_out = good.ranks[r].final_out;
        }
        const diff::Stage want = first_changed(x, y);
        const double size = relative_size(bad, good);
        for (Numerics n : kModes) {
          CAPTURE(f.vs[v].name);
          CAPTURE(small_name(s));
          CAPTURE(delta);
          CAPTURE(name(n));
          const SimOptions o = correct_options(m.config, DispatchModel::mori, n);
          const LayerRun run = simulate_layer(m, 0, wp, map, o);
          const std::string cand = tmp(std::to_string(v) + "-small.h5");
          write_run(cand, m, {run}, {o, judge_pairing(o.dispatch.model, o.consumer, o.combine), "test"});
          const Seen seen = judge(cand, golden_path(static_cast<int>(v), n), t);
          const RecordedDivergence rec = locate_recorded(t, cand, n, {}, MOESIM_TEST_TMP);
          // diff and bisect give one verdict.
          CHECK(seen.different == rec.first.found);
          if (seen.different) {
            CHECK(seen.stage == want);
            CHECK(rec.first.stage == want);
          }
          char line[256];
          std::snprintf(line, sizeof line, "  %-32s %-6s size %.2e: %s (%s)\n", small_name(s), std::string(name(n)).c_str(),
                        size, seen.different ? "caught" : "within the bound", seen.verdict.c_str());
          report << f.vs[v].name << ":" << line;
          // Everything but a small weight error is far past any rounding: it must be caught.
          if (s != Small::weight_off) CHECK(seen.different);
          // A 1e-2 weight error is caught wherever the outputs are not rounded to bf16.
          if (s == Small::weight_off && delta >= 1e-2 && (n == Numerics::exact || n == Numerics::fp32))
            CHECK(seen.different);
        }
      }
    }
  }
  std::cout << "small bugs:\n" << report.str();
}
