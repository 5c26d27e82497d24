// The verdict matrix (reference/NUMERICS.md, "How far two results may differ"): with the default
// criterion, every golden mode x run mode of every correct pairing agrees (no false alarm), and
// every bug model of diagnose's catalog plus four small bugs is reported at the stage where it
// first changes a value, by diff (run file against golden) and by bisect alike. The stage a bug
// must be reported at is found independently of the bound: the first stage whose values the bug
// changes in exact arithmetic by more than 1e-9 of their largest magnitude (float64 reordering
// moves them by 1e-16; verdict_fixtures.hpp). The small bugs: test_verdict_small_bugs.cpp.
// Figures go to stdout.
#include <doctest/doctest.h>

#include <array>
#include <iostream>
#include <map>

#include "verdict_fixtures.hpp"

using namespace moesim;
using namespace moesim::sim;
using namespace moesim::test::verdict;

TEST_CASE("no false alarm: every golden mode x run mode of every correct pairing is within the bound") {
  const Fixture& f = fixture();
  std::map<std::pair<int, int>, double> worst;  // (golden mode, run mode) -> worst ratio
  int pairs = 0, alarms = 0, reordered = 0;
  for (std::size_t v = 0; v < f.vs.size(); ++v) {
    const Trace& t = f.traces[v];
    const ExpertMap map = make_expert_map(t.config);
    const WeightProvider wp(t);
    for (DispatchModel d : {DispatchModel::mori, DispatchModel::deepep_ht, DispatchModel::deepep_ll, DispatchModel::pplx,
                            DispatchModel::pairs})
      for (Numerics rn : kModes)
        for (bool shuffled : {false, true}) {
          // Shuffled: rows in an arrival order the library leaves free (--shuffle-seed), which the
          // transported-value check must accept by matching rows to their sources.
          SimOptions o = correct_options(t.config, d, rn);
          o.dispatch.shuffle = shuffled;
          o.dispatch.shuffle_seed = 11 + v;
          const std::string run = tmp(std::to_string(v) + "-run.h5");
          const LayerRun lr = simulate_layer(t, 0, wp, map, o);
          if (shuffled) reordered += transport_changed(t, lr.dispatch, d);  // canonical order left
          write_run(run, t, {lr}, {o, judge_pairing(d, o.consumer, o.combine), "test"});
          for (Numerics gn : kModes) {
            CAPTURE(f.vs[v].name);
            CAPTURE(name(d));
            CAPTURE(name(rn));
            CAPTURE(name(gn));
            CAPTURE(shuffled);
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
  CHECK(reordered > 0);  // the shuffled runs do leave canonical order
  std::cout << "verdict matrix: " << pairs << " correct (run, golden) pairs, half of them with shuffled rows (" << reordered
            << " runs out of canonical order), " << alarms << " false alarms\n"
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
        // A dispatch that delivers other rows than its model does is reported there: the run
        // file records its buffers, and transported values are compared bit for bit.
        const diff::Stage want = transport_changed(t, p.dispatch, h.options.dispatch.model) ? diff::Stage::dispatch : wants[i];
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
    const diff::Stage want = transport_changed(c, pe.dispatch, DispatchModel::mori)
                                 ? diff::Stage::dispatch
                                 : first_changed(pe.ranks, predict(c, 0, catalog(c.config, DispatchModel::mori, exact)[0], wp, map).ranks);
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
