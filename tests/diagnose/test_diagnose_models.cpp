// Every bug model of the diagnose catalog: a trace captured from a simulated run with that bug
// is diagnosed with that model first; a correct capture is consistent; a capture of buffers and
// counts only gets structural hypotheses.
#include <doctest/doctest.h>

#include <set>

#include "diagnose/diagnose_fixtures.hpp"
#include "error.hpp"
#include "trace_io.hpp"

using namespace moesim;
using namespace moesim::sim;
using namespace moesim::test;

namespace {

Trace fresh() { return make_trace(diagnose_shape()); }

std::string ranking(const Diagnosis& d) {
  std::string s;
  for (const auto& e : d.ranked)
    s += d.hypothesis(e).key + (e.tested ? "(" + std::to_string(e.unexplained) + "," + std::to_string(e.score) + ") " : "(untested) ");
  return s;
}

// Diagnoses `tr` and checks `key` is first, strictly ahead of the correct integration.
Diagnosis expect_first(const Trace& tr, const std::string& key) {
  const Diagnosis d = diagnose(tr, diagnose_options());
  INFO("ranking: " << ranking(d));
  CHECK(d.hypothesis(d.ranked.front()).key == key);
  CHECK(d.ranked.front().unexplained == 0);
  CHECK_FALSE(d.consistent());
  const Evaluation& correct = evaluation_of(d, "correct");
  CHECK(correct.unexplained > 0);
  return d;
}

// A capture produced by a catalog hypothesis' own prediction (mutations with no SimOptions form).
void capture_hypothesis(Trace& tr, const std::string& key, DispatchModel library = DispatchModel::mori) {
  const auto cat = catalog(tr.config, library, diagnose_options().base);
  const Hypothesis* h = nullptr;
  for (const auto& c : cat)
    if (c.key == key) h = &c;
  REQUIRE(h);
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  const Prediction p = predict(tr, 0, *h, wp, map);
  REQUIRE(p.tested);
  fill_capture(tr, p.dispatch, p.ranks, p.x);
}

}  // namespace

TEST_CASE("a capture of the correct integration is consistent") {
  Trace tr = fresh();
  capture_run(tr, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  const Diagnosis d = diagnose(tr, diagnose_options());
  INFO("ranking: " << ranking(d));
  CHECK(d.consistent());
  CHECK(d.hypothesis(d.ranked.front()).key == "correct");
  const Evaluation& e = d.ranked.front();
  for (int o : {obs_counts, obs_sources, obs_ids, obs_x, obs_expert, obs_combine, obs_final}) {
    CAPTURE(obs_name(o));
    CHECK(e.obs[o].present);
    CHECK(e.explains(o, d.tolerance));
    CHECK(e.obs[o].error(obs_numeric(o)) == 0.0);
  }
  CHECK_FALSE(e.obs[obs_stale].present);
  for (const auto& b : d.buffers) CHECK((b.duplicate_positions == 0 && b.identical_rows == 0 && !b.full));
  // Every other model leaves something unexplained, or does not apply (nothing to fit, no stale
  // rows captured, no overflow at the captured capacity).
  for (const auto& ev : d.ranked) {
    if (d.hypothesis(ev).key == "correct") continue;
    CAPTURE(d.hypothesis(ev).key);
    CHECK((ev.tested ? ev.unexplained > 0 : !ev.note.empty()));
  }
  CHECK_FALSE(evaluation_of(d, "whole-buffer").tested);
}

TEST_CASE("weights applied twice and never") {
  Trace tr = fresh();
  capture_run(tr, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::weighted));
  const Diagnosis d = expect_first(tr, "weights-twice");
  // The correct integration predicts the buffers and the per-row outputs; only combine and final differ.
  const Evaluation& c = evaluation_of(d, "correct");
  CHECK(c.explains(obs_sources, d.tolerance));
  CHECK(c.explains(obs_expert, d.tolerance));
  CHECK_FALSE(c.explains(obs_final, d.tolerance));
  CHECK(c.obs[obs_final].first.find("token") != std::string::npos);

  Trace never = fresh();
  capture_hypothesis(never, "weights-never");
  const Diagnosis dn = expect_first(never, "weights-never");
  CHECK_FALSE(evaluation_of(dn, "correct").explains(obs_expert, dn.tolerance));
}

TEST_CASE("the seed's all-k consumer on mori rows: wrap and clamp") {
  for (NonLocal nl : {NonLocal::wrap, NonLocal::clamp}) {
    CAPTURE(name(nl));
    Trace tr = fresh();
    SimOptions o = options(DispatchModel::mori, ConsumerModel::all_k, CombineModel::rank_sum);
    o.consumer.non_local = nl;
    capture_run(tr, o);
    expect_first(tr, "all-k-" + std::string(name(nl)));
  }
}

TEST_CASE("the seed's flow on per-(token, expert) rows: wrap, clamp and mask") {
  for (NonLocal nl : {NonLocal::wrap, NonLocal::clamp, NonLocal::mask}) {
    CAPTURE(name(nl));
    Trace tr = fresh();
    SimOptions o = options(DispatchModel::pairs, ConsumerModel::all_k, CombineModel::rank_sum);
    o.consumer.non_local = nl;
    capture_run(tr, o);
    const Diagnosis d = expect_first(tr, "seed-all-k-" + std::string(name(nl)));
    // The per-pair rows are what the correct mori dispatch does not send.
    CHECK_FALSE(evaluation_of(d, "correct").explains(obs_sources, d.tolerance));
  }
}

TEST_CASE("reading the whole receive buffer: stale rows past total_recv computed") {
  for (bool seed : {false, true}) {
    CAPTURE(seed);
    Trace tr = fresh();
    SimOptions o = seed ? options(DispatchModel::pairs, ConsumerModel::all_k, CombineModel::rank_sum)
                        : options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum);
    capture_run(tr, o);
    // Stale rows: the rank's own first rows left in the buffer from an earlier step, reversed;
    // a whole-buffer consumer computes them like any row, so their outputs are those rows' outputs.
    const int K = tr.config.top_k, H = tr.config.hidden;
    for (auto& in : tr.layers[0].ranks) {
      Captured& cap = in.captured;
      const std::int64_t N = cap.total_recv, n = std::min<std::int64_t>(3, N);
      for (std::int64_t q = 0; q < n; ++q) {
        const std::int64_t from = N - 1 - q;
        cap.recv_x.insert(cap.recv_x.end(), cap.recv_x.begin() + from * H, cap.recv_x.begin() + (from + 1) * H);
        cap.recv_topk_ids.insert(cap.recv_topk_ids.end(), cap.recv_topk_ids.begin() + from * K,
                                 cap.recv_topk_ids.begin() + (from + 1) * K);
        cap.recv_weights.insert(cap.recv_weights.end(), cap.recv_weights.begin() + from * K,
                                cap.recv_weights.begin() + (from + 1) * K);
        cap.expert_out.insert(cap.expert_out.end(), cap.expert_out.begin() + from * H, cap.expert_out.begin() + (from + 1) * H);
      }
      cap.rows = N + n;
      cap.expert_rows = N + n;
      cap.buffer_rows = std::max(cap.buffer_rows, cap.rows);
    }
    const Diagnosis d = expect_first(tr, seed ? "seed-all-k-wrap-whole-buffer" : "whole-buffer");
    // Named with its cost per distinct source token (distinct positions on each rank).
    // ("pair" positions carry the slot: (source * K + slot) / K is the source.)
    std::int64_t sources = 0;
    for (const auto& in : tr.layers[0].ranks) {
      std::set<std::int64_t> distinct;
      for (std::int64_t i = 0; i < in.captured.total_recv; ++i) distinct.insert(in.captured.src_token_pos[i] / (seed ? K : 1));
      sources += static_cast<std::int64_t>(distinct.size());
    }
    INFO(d.answer);
    CHECK(d.answer.rfind(seed ? "the all-k flow over the whole receive buffer: " : "reading the whole receive buffer: ", 0) == 0);
    CHECK(d.answer.find(" expert computations for " + std::to_string(sources) + " distinct source tokens received") !=
          std::string::npos);
    const Evaluation& best = d.ranked.front();
    CHECK(best.obs[obs_stale].present);
    CHECK(best.obs[obs_stale].error(true) == 0.0);
    CHECK_FALSE(evaluation_of(d, seed ? "seed-all-k-wrap" : "correct").explains(obs_stale, d.tolerance));
    // A consumer that does not read them, whose reading would compute other values, is not blamed for them.
    CHECK(evaluation_of(d, seed ? "correct" : "all-k-wrap").explains(obs_stale, d.tolerance));
  }
}

TEST_CASE("rows past total_recv left uninitialized by a correct consumer: consistent") {
  Trace tr = fresh();
  capture_run(tr, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  const int K = tr.config.top_k, H = tr.config.hidden;
  for (auto& in : tr.layers[0].ranks) {
    Captured& cap = in.captured;
    const std::int64_t N = cap.total_recv;
    // A stale copy of row 0 whose output slot holds leftovers (encoding rank and row), not its result.
    cap.recv_x.insert(cap.recv_x.end(), cap.recv_x.begin(), cap.recv_x.begin() + H);
    cap.recv_topk_ids.insert(cap.recv_topk_ids.end(), cap.recv_topk_ids.begin(), cap.recv_topk_ids.begin() + K);
    cap.recv_weights.insert(cap.recv_weights.end(), cap.recv_weights.begin(), cap.recv_weights.begin() + K);
    for (int h = 0; h < H; ++h) cap.expert_out.push_back(static_cast<float>(100 + h));
    cap.rows = cap.expert_rows = N + 1;
  }
  const Diagnosis d = diagnose(tr, diagnose_options());
  INFO("ranking: " << ranking(d));
  CHECK(d.consistent());
  const Evaluation& wb = evaluation_of(d, "whole-buffer");
  REQUIRE(wb.tested);
  CHECK_FALSE(wb.explains(obs_stale, d.tolerance));
  CHECK(d.ranked.front().obs[obs_stale].present);
}

TEST_CASE("global ids read as local, local ids read as global") {
  Trace a = fresh();
  capture_run(a, options(DispatchModel::mori, ConsumerModel::deepep_local, CombineModel::rank_sum));
  expect_first(a, "global-as-local");

  Trace b = fresh();
  capture_run(b, options(DispatchModel::deepep_ht, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  const Diagnosis d = expect_first(b, "local-as-global");
  // The captured ids are local: the correct mori rows' global ids do not match them.
  CHECK_FALSE(evaluation_of(d, "correct").explains(obs_ids, d.tolerance));
  CHECK(evaluation_of(d, "correct").obs[obs_ids].first.find("ids [") != std::string::npos);
}

TEST_CASE("-1 ids sent to rank 0 (old MORI)") {
  Trace tr = fresh();
  SimOptions o = options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum);
  o.dispatch.negative = NegativeIds::rank0;
  capture_run(tr, o);
  Trace plain = fresh();
  capture_run(plain, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  REQUIRE(tr.layers[0].ranks[0].captured.total_recv > plain.layers[0].ranks[0].captured.total_recv);
  const Diagnosis d = expect_first(tr, "minus-one-to-rank0");
  // The extra rank-0 rows are no duplicates of rows the correct dispatch sends: the fitted 507 model cannot explain them.
  const Evaluation& fit = evaluation_of(d, "rows-duplicated-or-dropped");
  CHECK((!fit.tested || fit.unexplained > 0));
}

TEST_CASE("silent receive overflow (mori 356)") {
  Trace tr = fresh();
  tr.config.mori.max_total_recv_tokens = 10;
  SimOptions o = options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum);
  o.dispatch.overflow = Overflow::drop;
  o.dispatch.max_total_recv = 10;
  capture_run(tr, o);
  std::int64_t full = 0;
  for (const auto& in : tr.layers[0].ranks) full += in.captured.total_recv == 10;
  REQUIRE(full > 0);
  const Diagnosis d = expect_first(tr, "silent-overflow");
  CHECK(d.ranked.front().note.find("dropped") != std::string::npos);
  std::int64_t flagged = 0;
  for (const auto& b : d.buffers) flagged += b.full;
  CHECK(flagged == full);
  // Without a capacity in the trace, the captured buffer size gives it.
  Trace no_setting = tr;
  no_setting.config.mori.max_total_recv_tokens = 0;
  expect_first(no_setting, "silent-overflow");
}

TEST_CASE("combine given the received ids (mori 475): harmless for intranode kernels") {
  Trace tr = fresh();
  REQUIRE(tr.config.mori.kernel_type == "IntraNode");
  capture_run(tr, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum), true);
  const Diagnosis d = diagnose(tr, diagnose_options());
  CHECK(d.consistent());
  CHECK_FALSE(evaluation_of(d, "combine-recv-ids").tested);
  CHECK(evaluation_of(d, "combine-recv-ids").note.find("InterNode") != std::string::npos);
}

TEST_CASE("combine given the received ids (mori 475)") {
  Trace tr = fresh();
  tr.config.mori.kernel_type = "InterNodeV1";
  tr.config.mori.gpus_per_node = tr.config.num_ranks;  // one node: the two-level sum is rank-sum's
  capture_hypothesis(tr, "combine-recv-ids");
  // By hand: token t of rank s sums, once per rank in slot order, its own returned row on each
  // rank that row t of its rank's receive buffer names (nothing for ranks it was not sent to).
  const LayerRun run = [&] {
    const ExpertMap map = make_expert_map(tr.config);
    const WeightProvider wp(tr);
    return simulate_layer(tr, 0, wp, map, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  }();
  const int K = tr.config.top_k, H = tr.config.hidden, E_local = tr.config.experts_per_rank();
  std::int64_t differs = 0;
  for (int s = 0; s < tr.config.num_ranks; ++s) {
    const Captured& cap = tr.layers[0].ranks[s].captured;
    for (std::int64_t t = 0; t < tr.layers[0].ranks[s].num_tokens; ++t) {
      std::vector<float> want(H, 0.0f);
      std::vector<int> seen;
      for (int k = 0; k < K && t < cap.total_recv; ++k) {
        const int id = cap.recv_topk_ids[t * K + k];
        if (id < 0 || std::find(seen.begin(), seen.end(), id / E_local) != seen.end()) continue;
        seen.push_back(id / E_local);
        for (int q = 0; q < K; ++q)
          if (run.dispatch.slot_dest[s][t * K + q] == id / E_local) {
            const std::int64_t row = run.dispatch.slot_row[s][t * K + q];
            for (int h = 0; h < H; ++h) want[h] = want[h] + run.ranks[id / E_local].expert_rows.f32[row * H + h];
            break;
          }
      }
      for (int h = 0; h < H; ++h) CHECK(cap.combine_out[t * H + h] == want[h]);
      differs += want != std::vector<float>(run.ranks[s].combine_out.f32.begin() + t * H,
                                            run.ranks[s].combine_out.f32.begin() + (t + 1) * H);
    }
  }
  CHECK(differs > 0);
  const Diagnosis d = expect_first(tr, "combine-recv-ids");
  const Evaluation& c = evaluation_of(d, "correct");
  CHECK(c.explains(obs_expert, d.tolerance));  // the expert side was right
  CHECK_FALSE(c.explains(obs_combine, d.tolerance));
}

TEST_CASE("duplicated and dropped rows (mori 507)") {
  const SimOptions ok = options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum);
  const int K = 4, H = 8;
  SUBCASE("a row duplicated: outputs unchanged, the buffer has an extra row") {
    Trace tr = fresh();
    capture_run(tr, ok);
    Captured& cap = tr.layers[0].ranks[1].captured;
    const std::int64_t i = 2, N = cap.total_recv;
    cap.recv_x.insert(cap.recv_x.end(), cap.recv_x.begin() + i * H, cap.recv_x.begin() + (i + 1) * H);
    cap.recv_topk_ids.insert(cap.recv_topk_ids.end(), cap.recv_topk_ids.begin() + i * K, cap.recv_topk_ids.begin() + (i + 1) * K);
    cap.recv_weights.insert(cap.recv_weights.end(), cap.recv_weights.begin() + i * K, cap.recv_weights.begin() + (i + 1) * K);
    cap.expert_out.insert(cap.expert_out.end(), cap.expert_out.begin() + i * H, cap.expert_out.begin() + (i + 1) * H);
    cap.src_token_pos.push_back(cap.src_token_pos[i]);
    cap.total_recv = cap.rows = cap.expert_rows = N + 1;
    const Diagnosis d = expect_first(tr, "rows-duplicated-or-dropped");
    CHECK(d.ranked.front().note == "fitted: 1 rows duplicated, 0 dropped");
    std::int64_t dup_positions = 0;
    for (const auto& b : d.buffers) dup_positions += b.duplicate_positions;
    CHECK(dup_positions == 1);
  }
  SUBCASE("a row dropped: its token misses that rank's contribution") {
    Trace tr = fresh();
    capture_run(tr, ok);
    Captured& cap = tr.layers[0].ranks[3].captured;
    const std::int64_t i = 1;
    cap.recv_x.erase(cap.recv_x.begin() + i * H, cap.recv_x.begin() + (i + 1) * H);
    cap.recv_topk_ids.erase(cap.recv_topk_ids.begin() + i * K, cap.recv_topk_ids.begin() + (i + 1) * K);
    cap.recv_weights.erase(cap.recv_weights.begin() + i * K, cap.recv_weights.begin() + (i + 1) * K);
    cap.src_token_pos.erase(cap.src_token_pos.begin() + i);
    --cap.total_recv;
    --cap.rows;
    // The outputs of a run whose transport lost that row: the fitted model's own prediction.
    capture_hypothesis(tr, "rows-duplicated-or-dropped");
    const Diagnosis d = expect_first(tr, "rows-duplicated-or-dropped");
    CHECK(d.ranked.front().note == "fitted: 0 rows duplicated, 1 dropped");
    CHECK_FALSE(evaluation_of(d, "correct").explains(obs_final, d.tolerance));
  }
}

TEST_CASE("identical source tokens: a capture of a dummy warm-up batch") {
  Trace tr = fresh();
  Trace warm = tr;
  const int H = tr.config.hidden;
  const std::vector<float> row(tr.layers[0].ranks[1].x.begin() + 3 * H, tr.layers[0].ranks[1].x.begin() + 4 * H);
  for (auto& in : warm.layers[0].ranks)
    for (std::int64_t t = 0; t < in.num_tokens; ++t) std::copy(row.begin(), row.end(), in.x.begin() + t * H);
  capture_run(warm, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  for (int r = 0; r < tr.config.num_ranks; ++r) tr.layers[0].ranks[r].captured = warm.layers[0].ranks[r].captured;
  const Diagnosis d = expect_first(tr, "warmup-identical-tokens");
  std::int64_t identical = 0;
  for (const auto& b : d.buffers) identical += b.identical_rows;
  CHECK(identical > 0);
  CHECK_FALSE(evaluation_of(d, "correct").explains(obs_x, d.tolerance));
}

TEST_CASE("partial evidence: receive buffers and counts only") {
  const SimOptions ok = options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum);
  SUBCASE("correct buffers: consistent, output-only models untested") {
    Trace tr = fresh();
    capture_run(tr, ok, false);
    const Diagnosis d = diagnose(tr, diagnose_options());
    INFO("ranking: " << ranking(d));
    CHECK_FALSE(d.has_outputs);
    CHECK(d.consistent());
    for (const char* key : {"weights-twice", "weights-never", "all-k-wrap", "combine-recv-ids", "global-as-local"})
      CHECK_FALSE(evaluation_of(d, key).tested);
    for (const auto& e : d.ranked) {
      if (!e.tested) continue;
      CHECK((d.hypothesis(e).structural || d.hypothesis(e).correct));
      CHECK_FALSE(e.obs[obs_final].present);
    }
  }
  SUBCASE("-1 to rank 0 buffers") {
    Trace tr = fresh();
    SimOptions o = ok;
    o.dispatch.negative = NegativeIds::rank0;
    capture_run(tr, o, false);
    expect_first(tr, "minus-one-to-rank0");
  }
  SUBCASE("per-(token, expert) buffers: the seed's flow, its variants tie without outputs") {
    Trace tr = fresh();
    capture_run(tr, options(DispatchModel::pairs, ConsumerModel::all_k, CombineModel::rank_sum), false);
    const Diagnosis d = expect_first(tr, "seed-all-k-wrap");
    CHECK(evaluation_of(d, "seed-all-k-mask").unexplained == 0);
  }
}

TEST_CASE("rows matched by src_token_pos: shuffled arrival, legacy encoding, bf16 tokens") {
  TraceShape shape = diagnose_shape();
  shape.token_dtype = DType::bf16;
  for (bool twice : {false, true}) {
    CAPTURE(twice);
    Trace tr = make_trace(shape);
    SimOptions o = options(DispatchModel::mori, ConsumerModel::aiter_mask,
                           twice ? CombineModel::weighted : CombineModel::rank_sum);
    o.numerics = Numerics::bf16;
    o.dispatch.shuffle = true;
    o.dispatch.shuffle_seed = 5;
    o.dispatch.encoding = SrcPosEncoding::legacy;
    capture_run(tr, o);
    // The shuffle moved rows: row 0 of some rank is not its canonical first row.
    Trace canon = make_trace(shape);
    capture_run(canon, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
    bool moved = false;
    for (int r = 0; r < 4; ++r)
      moved = moved || tr.layers[0].ranks[r].captured.recv_topk_ids != canon.layers[0].ranks[r].captured.recv_topk_ids;
    REQUIRE(moved);
    DiagnoseOptions dopt = diagnose_options();
    dopt.base.numerics = Numerics::bf16;
    const Diagnosis d = diagnose(tr, dopt);
    INFO("ranking: " << ranking(d));
    CHECK(d.tolerance == doctest::Approx(1e-2));
    CHECK(d.hypothesis(d.ranked.front()).key == (twice ? "weights-twice" : "correct"));
    CHECK(d.consistent() == !twice);
  }
}

TEST_CASE("other libraries: the correct pairing is consistent, weights twice and never are found") {
  for (DispatchModel lib : {DispatchModel::deepep_ht, DispatchModel::deepep_ll, DispatchModel::pplx}) {
    CAPTURE(name(lib));
    DiagnoseOptions dopt = diagnose_options();
    dopt.base.dispatch.model = lib;
    dopt.library_set = true;
    Trace tr = fresh();
    capture_run(tr, options(lib, default_consumer(lib), default_combine(lib, "IntraNode")));
    const Diagnosis d = diagnose(tr, dopt);
    INFO("ranking: " << ranking(d));
    CHECK(d.consistent());
    for (const char* key : {"weights-twice", "weights-never"}) {
      CAPTURE(key);
      Trace bug = fresh();
      capture_hypothesis(bug, key, lib);
      const Diagnosis db = diagnose(bug, dopt);
      INFO("ranking: " << ranking(db));
      CHECK(db.hypothesis(db.ranked.front()).key == key);
      CHECK_FALSE(db.consistent());
    }
  }
}

TEST_CASE("the bundled seed-ep8 trace (bf16, shared expert, routed scaling 2.5): the seed's flow found") {
  Trace tr = read_trace(std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/seed-ep8.h5");
  SimOptions o = options(DispatchModel::pairs, ConsumerModel::all_k, CombineModel::rank_sum);
  o.numerics = Numerics::bf16;
  capture_run(tr, o);
  DiagnoseOptions dopt;
  dopt.base.numerics = Numerics::bf16;
  dopt.base.threads = 2;
  const Diagnosis d = diagnose(tr, dopt);
  INFO("ranking: " << ranking(d));
  CHECK(d.hypothesis(d.ranked.front()).key == "seed-all-k-wrap");
  CHECK(d.ranked.front().unexplained == 0);
  // 8 ranks x 64 tokens x top-8 as per-(token, expert) rows: the correct mori dispatch sends fewer.
  const Evaluation& c = evaluation_of(d, "correct");
  CHECK_FALSE(c.explains(obs_counts, d.tolerance));
  CHECK_FALSE(c.explains(obs_final, d.tolerance));
}

TEST_CASE("several layers: observations summed over layers, or one layer picked") {
  Trace tr = fresh();
  Layer second = tr.layers[0];
  second.index = 1;  // other generated weights
  tr.layers.push_back(second);
  const SimOptions ok = options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum);
  const SimOptions twice = options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::weighted);
  capture_run(tr, twice, true, 0);
  capture_run(tr, twice, true, 1);
  expect_first(tr, "weights-twice");

  capture_run(tr, ok, true, 0);  // layer 0 right, layer 1 wrong
  const Diagnosis both = diagnose(tr, diagnose_options());
  CHECK_FALSE(both.consistent());
  CHECK(evaluation_of(both, "correct").obs[obs_final].first.find("layer 1 ") == 0);
  DiagnoseOptions o = diagnose_options();
  o.layer = 0;
  CHECK(diagnose(tr, o).consistent());
  o.layer = 1;
  const Diagnosis d1 = diagnose(tr, o);
  CHECK(d1.hypothesis(d1.ranked.front()).key == "weights-twice");
  CHECK(d1.layers == std::vector<int>{1});
}

TEST_CASE("nothing captured is an error naming the file") {
  Trace tr = fresh();
  CHECK_THROWS_WITH_AS(diagnose(tr, diagnose_options()),
                       doctest::Contains("nothing captured"), Error);
}
