// The verdict matrix's small bugs (reference/NUMERICS.md, "How far two results may differ" and
// "Transported values are compared bit for bit"): one slot sent to the wrong expert, one router
// weight off by 1e-2, 1e-4, 1e-6 and 1e-7, the routed scaling applied twice, the weight
// renormalization left out, each run through a correct integration in every mode and judged
// against the golden of the original trace by diff and by bisect: one verdict from both, at the
// stage the bug first changes. A candidate that records its dispatch buffers shows every bug that
// changes what the dispatch carries at stage dispatch; one in the golden layout (outputs only) is
// caught wherever the bug exceeds the rounding bound. Figures go to stdout.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <tuple>

#include "verdict_fixtures.hpp"

using namespace moesim;
using namespace moesim::sim;
using namespace moesim::test::verdict;

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

// Where the run file records its dispatch buffers, transported values (the received rows' ids and
// weights, MORI's combine weights) are compared bit for bit with what the recorded dispatch model
// delivers for the routing: a bug that changes what a dispatch carries is reported at stage
// dispatch, naming its source token and slot, in every mode and however small. Without the
// buffers (a candidate in the golden layout) only the rounding bound speaks.
TEST_CASE("small bugs: caught at the right stage by diff and bisect, at dispatch where the buffers are recorded") {
  const Fixture& f = fixture();
  std::ostringstream report;
  std::map<std::tuple<int, bool, double>, std::size_t> caught_in;  // (mode, buffers, weight error) -> variants
  int cases = 0, wrong = 0;
  const std::vector<double> weight_deltas{1e-2, 1e-4, 1e-6, 1e-7};
  for (std::size_t v = 0; v < f.vs.size(); ++v) {
    const Trace& t = f.traces[v];
    for (Small s : {Small::wrong_expert, Small::weight_off, Small::scaling_twice, Small::no_renormalization}) {
      if (s == Small::scaling_twice && t.config.routed_scaling_factor == 1.0) continue;  // nothing to apply twice
      const std::vector<double> deltas = s == Small::weight_off ? weight_deltas : std::vector<double>{0};
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
        const diff::Stage want_outputs = first_changed(x, y);
        const double size = relative_size(bad, good);
        for (Numerics n : kModes) {
          const SimOptions o = correct_options(m.config, DispatchModel::mori, n);
          const LayerRun run = simulate_layer(m, 0, wp, map, o);
          for (bool buffers : {true, false}) {
            CAPTURE(f.vs[v].name);
            CAPTURE(small_name(s));
            CAPTURE(delta);
            CAPTURE(name(n));
            CAPTURE(buffers);
            const std::string cand = tmp(std::to_string(v) + "-small.h5");
            if (buffers) write_run(cand, m, {run}, {o, judge_pairing(o.dispatch.model, o.consumer, o.combine), "test"});
            else write_outputs_only(cand, m, run, n);
            const bool carried = buffers && transport_changed(t, run.dispatch, o.dispatch.model);
            const diff::Stage want = carried ? diff::Stage::dispatch : want_outputs;
            // A scaled weight reaches the buffers (1 + 1e-7 may round back to the same float).
            if (s == Small::weight_off && buffers && delta >= 1e-6) CHECK(carried);
            const Seen seen = judge(cand, golden_path(static_cast<int>(v), n), t);
            const RecordedDivergence rec = locate_recorded(t, cand, n, {}, MOESIM_TEST_TMP);
            CAPTURE(seen.verdict);
            // diff and bisect give one verdict.
            CHECK(seen.different == rec.first.found);
            if (seen.different) {
              CHECK(seen.stage == want);
              CHECK(rec.first.stage == want);
            }
            bool ok = seen.different == rec.first.found && (!seen.different || (seen.stage == want && rec.first.stage == want));
            // Everything but a small weight error is far past any rounding: it must be caught.
            // A 1e-2 weight error is caught wherever the outputs are not rounded to bf16.
            const bool must = s != Small::weight_off ||
                              (delta >= 1e-2 && (n == Numerics::exact || n == Numerics::fp32));
            if (must) CHECK(seen.different);
            ok = ok && (!must || seen.different);
            if (carried) {
              // What a dispatch carries is compared bit for bit: caught in every mode, however small.
              CHECK(seen.different);
              CHECK(seen.transported);
              ok = ok && seen.different && seen.transported;
            }
            if (carried && s != Small::no_renormalization) {
              // Naming the mutated source token (rank 1, token 3), by diff and bisect alike.
              CHECK(seen.src_rank == 1);
              CHECK(seen.src_token == 3);
              CHECK(rec.first.rank == 1);
              CHECK(rec.first.token == 3);
              ok = ok && seen.src_rank == 1 && seen.src_token == 3 && rec.first.rank == 1 && rec.first.token == 3;
              if (s == Small::weight_off) {
                int slot = 0;  // the slot mutate() scaled
                while (t.layers[0].ranks[1].topk_ids[3 * t.config.top_k + slot] < 0) ++slot;
                CHECK(seen.slot == slot);
                ok = ok && seen.slot == slot;
              }
            }
            ++cases;
            wrong += !ok;
            if (s == Small::weight_off) caught_in[{static_cast<int>(n), buffers, delta}] += seen.different;
            char head[160];
            std::snprintf(head, sizeof head, "  %-32s %-6s %-12s size %.2e: ", small_name(s), std::string(name(n)).c_str(),
                          buffers ? "with buffers" : "outputs only", size);
            report << f.vs[v].name << ":" << head
                   << (seen.different ? (seen.stage == diff::Stage::dispatch ? "caught at dispatch" : "caught")
                                      : "within the bound")
                   << " (" << seen.verdict << ")\n";
          }
        }
      }
    }
  }
  // The smallest weight error caught in every variant, per mode, with and without the buffers.
  std::cout << "one router weight off: the smallest relative error caught in all " << f.vs.size() << " variants\n";
  for (bool buffers : {true, false}) {
    std::cout << (buffers ? "  with dispatch buffers:" : "  outputs only:         ");
    for (Numerics n : kModes) {
      double least = 0;
      for (double d : weight_deltas)
        if (caught_in[{static_cast<int>(n), buffers, d}] == f.vs.size()) least = d;
      char b[48];
      if (least > 0) std::snprintf(b, sizeof b, "  %s %.0e", std::string(name(n)).c_str(), least);
      else std::snprintf(b, sizeof b, "  %s none", std::string(name(n)).c_str());
      std::cout << b;
    }
    std::cout << "\n";
  }
  std::cout << "small bugs: " << cases << " (variant, bug, mode, candidate) cases, " << wrong
            << " missed, at a wrong stage, or naming a wrong source\n" << report.str();
  CHECK(wrong == 0);
}
