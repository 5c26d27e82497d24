// The verdict matrix's small bugs (reference/NUMERICS.md, "How far two results may differ"): one
// slot sent to the wrong expert, one router weight off by 1e-2, 1e-4 and 1e-6, the routed scaling
// applied twice, the weight renormalization left out, each run through a correct integration in
// every mode and judged against the golden of the original trace by diff and by bisect: one
// verdict from both, at the stage the bug first changes; caught wherever it exceeds the bound.
// Figures go to stdout.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

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
