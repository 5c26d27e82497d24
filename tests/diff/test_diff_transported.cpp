// Transported values (reference/NUMERICS.md, "Transported values are compared bit for bit"): a run
// file's received weights, ids, tokens and MORI combine weights against what its recorded
// dispatch model delivers for the routing, one bit off at a time, each naming its source token
// (rank 1, token 3) and slot, by diff (the routing read from the trace file, its tokens one layer
// at a time) and bisect --candidate alike; what is not checked, and why.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "verdict_fixtures.hpp"

using namespace moesim;
using namespace moesim::sim;
using namespace moesim::test::verdict;

namespace {

struct Setup {
  Trace t;
  std::string trace_path = tmp("transported.h5"), gold = tmp("transported-golden.h5");
  SimOptions o;
  LayerRun run;
  int K = 0, H = 0;
  Setup() {
    t = written(variants()[0], trace_path);
    K = t.config.top_k, H = t.config.hidden;
    ReferenceOptions ro;
    ro.numerics = Numerics::bf16;
    write_golden(gold, t, run_reference(t, ro), Numerics::bf16, "test");
    o = correct_options(t.config, DispatchModel::mori, Numerics::bf16);
    run = simulate_layer(t, 0, WeightProvider(t), make_expert_map(t.config), o);
  }
  std::string write(const LayerRun& r, const Trace& tokens_of, const std::string& leaf) const {
    const std::string p = tmp(leaf);
    write_run(p, tokens_of, {r}, {o, judge_pairing(o.dispatch.model, o.consumer, o.combine), "test"});
    return p;
  }
  diff::Result judged(const std::string& cand) const {
    diff::Options d;
    d.routing_trace = trace_path;  // read from the file, as `moesim diff --trace` does
    return compare_files(cand, gold, d);
  }
  // The first received row of (rank 1, token 3): its rank and row.
  std::pair<int, std::int64_t> row_of_source() const {
    for (std::size_t r = 0; r < run.dispatch.ranks.size(); ++r)
      for (std::int64_t i = 0; i < run.dispatch.ranks[r].total_recv; ++i)
        if (run.dispatch.ranks[r].src_rank[i] == 1 && run.dispatch.ranks[r].src_token[i] == 3) return {static_cast<int>(r), i};
    return {-1, -1};
  }
  int first_valid_slot() const {
    int k = 0;
    while (t.layers[0].ranks[1].topk_ids[3 * K + k] < 0) ++k;
    return k;
  }
};

const Setup& setup() {
  static const Setup s;
  return s;
}

}  // namespace

TEST_CASE("a correct run, and the same run with its rows shuffled, has no transported finding") {
  const Setup& s = setup();
  SimOptions shuffled = s.o;
  shuffled.dispatch.shuffle = true;
  shuffled.dispatch.shuffle_seed = 5;
  const LayerRun r = simulate_layer(s.t, 0, WeightProvider(s.t), make_expert_map(s.t.config), shuffled);
  REQUIRE(transport_changed(s.t, r.dispatch, DispatchModel::mori));  // the order did change
  for (const LayerRun* run : {&s.run, &r}) {
    const diff::Result d = s.judged(s.write(*run, s.t, "transported-ok.h5"));
    CHECK(d.transported.empty());
    CHECK(d.transport_note.empty());
    CHECK_FALSE(d.different());
  }
}

TEST_CASE("one received weight one float32 ulp off is a divergence at dispatch naming its source, slot and both values") {
  const Setup& s = setup();
  const auto [rank, row] = s.row_of_source();
  REQUIRE(rank >= 0);
  const int k = s.first_valid_slot();
  LayerRun bad = s.run;
  float& w = bad.dispatch.ranks[rank].weights[row * s.K + k];
  const float was = w;
  w = std::nextafter(w, 2.0f);
  const std::string cand = s.write(bad, s.t, "transported-weight.h5");
  const diff::Result d = s.judged(cand);
  REQUIRE(d.transported.size() == 1);
  const diff::TransportedMismatch& m = d.transported[0];
  CHECK(m.stage == diff::Stage::dispatch);
  CHECK(m.path == rank_path(0, rank) + "/dispatch/recv_weights");
  CHECK(m.layer == 0);
  CHECK(m.rank == rank);
  CHECK(m.row == row);
  CHECK(m.src_rank == 1);
  CHECK(m.src_token == 3);
  CHECK(m.slot == k);
  CHECK(m.got == static_cast<double>(w));
  CHECK(m.want == static_cast<double>(was));
  CHECK(m.what.find("received weight") != std::string::npos);
  CHECK(m.what.find("transported values must be equal bits, this is not rounding") != std::string::npos);
  CHECK(d.different());
  CHECK(d.verdict().find("within the bf16 rounding bound") == 0);  // the outputs are untouched
  CHECK(d.verdict().find("; but " + m.path + ": row " + std::to_string(row) + " (source rank 1, token 3, slot " +
                         std::to_string(k) + ")") != std::string::npos);
  const RecordedDivergence rec = locate_recorded(s.t, cand, Numerics::bf16, {}, MOESIM_TEST_TMP);
  CHECK(rec.first.found);
  CHECK(rec.first.stage == diff::Stage::dispatch);
  CHECK(rec.first.dataset == m.path);
  CHECK(rec.first.rank == 1);
  CHECK(rec.first.token == 3);
}

TEST_CASE("a received id changed is a divergence at dispatch") {
  const Setup& s = setup();
  const auto [rank, row] = s.row_of_source();
  const int k = s.first_valid_slot();
  LayerRun bad = s.run;
  bad.dispatch.ranks[rank].ids[row * s.K + k] ^= 1;
  const diff::Result d = s.judged(s.write(bad, s.t, "transported-id.h5"));
  REQUIRE(d.transported.size() == 1);
  CHECK(d.transported[0].path == rank_path(0, rank) + "/dispatch/recv_topk_ids");
  CHECK(d.transported[0].src_token == 3);
  CHECK(d.transported[0].slot == k);
  CHECK(d.transported[0].what.find("received id") != std::string::npos);
}

TEST_CASE("a received token value one bit off is a divergence at dispatch, in diff (tokens read per layer) and bisect") {
  const Setup& s = setup();
  Trace other = s.t;  // write_run copies recv_x from the tokens of the trace it is given
  float& x = other.layers[0].ranks[1].x[3 * s.H + 5];
  x = -x;  // sign bit: representable in the token dtype
  REQUIRE(x != 0);
  const std::string cand = s.write(s.run, other, "transported-x.h5");
  const diff::Result d = s.judged(cand);
  REQUIRE_FALSE(d.transported.empty());
  CHECK(d.transported[0].path.find("/dispatch/recv_x") != std::string::npos);
  CHECK(d.transported[0].src_rank == 1);
  CHECK(d.transported[0].src_token == 3);
  CHECK(d.transported[0].row >= 0);
  CHECK(d.transported[0].got == -d.transported[0].want);
  const RecordedDivergence rec = locate_recorded(s.t, cand, Numerics::bf16, {}, MOESIM_TEST_TMP);
  CHECK(rec.first.stage == diff::Stage::dispatch);
  CHECK(rec.first.dataset == d.transported[0].path);
}

TEST_CASE("a MORI combine weight one ulp off is a divergence at combine") {
  const Setup& s = setup();
  const int k = s.first_valid_slot();
  LayerRun bad = s.run;
  float& w = bad.ranks[1].combine_weights[3 * s.K + k];
  w = std::nextafter(w, 2.0f);
  const diff::Result d = s.judged(s.write(bad, s.t, "transported-combine.h5"));
  REQUIRE(d.transported.size() == 1);
  CHECK(d.transported[0].stage == diff::Stage::combine);
  CHECK(d.transported[0].path == rank_path(0, 1) + "/combine_weights");
  CHECK(d.transported[0].src_token == 3);
  CHECK(d.transported[0].slot == k);
}

TEST_CASE("transported values are not checked under an explicit tolerance or without the routing, and the report says so") {
  const Setup& s = setup();
  const auto [rank, row] = s.row_of_source();
  LayerRun bad = s.run;
  bad.dispatch.ranks[rank].weights[row * s.K + s.first_valid_slot()] *= 2;
  const std::string cand = s.write(bad, s.t, "transported-unchecked.h5");
  diff::Options tol;
  tol.routing_trace = s.trace_path;
  tol.tolerances.atol = 1e-2;
  const diff::Result a = compare_files(cand, s.gold, tol);
  CHECK(a.transported.empty());
  CHECK(a.transport_note.find("not checked: the files are judged by tolerances") != std::string::npos);
  // The trace the files name is gone: no routing.
  const std::string moved = tmp("transported-moved.h5");
  std::filesystem::copy_file(s.trace_path, moved, std::filesystem::copy_options::overwrite_existing);
  Trace t2 = read_trace(moved);
  const std::string gold2 = tmp("transported-golden2.h5"), cand2 = tmp("transported-unrouted.h5");
  ReferenceOptions ro;
  ro.numerics = Numerics::bf16;
  write_golden(gold2, t2, run_reference(t2, ro), Numerics::bf16, "test");
  write_run(cand2, t2, {bad}, {s.o, judge_pairing(s.o.dispatch.model, s.o.consumer, s.o.combine), "test"});
  std::filesystem::remove(moved);
  const diff::Result b = compare_files(cand2, gold2, {});
  CHECK(b.transported.empty());
  CHECK(b.transport_note.find("no routing trace") != std::string::npos);
}
