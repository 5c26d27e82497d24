// Dispatch models in the style of the libraries' own suites: counts per rank and per expert
// against a reference built from topk_ids // E_local (per-token duplicates removed for the
// rank-dedup models, kept for the pair models), and every row checked against its decoded
// source (DeepEP tests/legacy/test_intranode.py, MORI dispatch_combine_test_utils.py).
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "dispatch.hpp"
#include "pairing.hpp"
#include "error.hpp"
#include "sim_fixtures.hpp"
#include "simulate.hpp"
#include "stats.hpp"

using namespace moesim;
using namespace moesim::sim;

namespace {

constexpr DispatchModel kAll[] = {DispatchModel::mori, DispatchModel::deepep_ht, DispatchModel::deepep_ll,
                                  DispatchModel::pplx, DispatchModel::pairs};

using test::sources_of;

// Reference counts from ids // E_local, the way DeepEP's test builds them.
void reference_counts(const Trace& tr, bool dedup, std::vector<std::int64_t>& per_rank,
                      std::vector<std::int64_t>& per_expert) {
  const auto& c = tr.config;
  const int E_local = c.num_experts / c.num_ranks;
  per_rank.assign(c.num_ranks, 0);
  per_expert.assign(c.num_experts, 0);
  for (const auto& in : tr.layers[0].ranks)
    for (std::int64_t t = 0; t < in.num_tokens; ++t) {
      std::set<int> ranks;
      for (int k = 0; k < c.top_k; ++k) {
        const int id = in.topk_ids[t * c.top_k + k];
        if (id < 0) continue;
        ++per_expert[id];
        if (dedup) ranks.insert(id / E_local);
        else ++per_rank[id / E_local];
      }
      for (int r : ranks) ++per_rank[r];
    }
}

}  // namespace

TEST_CASE("every dispatch model's counts per rank and per expert match topk_ids // E_local") {
  test::TraceShape shape;
  shape.tokens = {23, 40, 0, 17};
  const Trace tr = test::make_trace(shape);
  const ExpertMap map = make_expert_map(tr.config);
  const auto src = sources_of(tr);
  for (auto m : kAll) {
    CAPTURE(name(m));
    std::vector<std::int64_t> ref_rank, ref_expert;
    reference_counts(tr, rank_dedup(m), ref_rank, ref_expert);
    DispatchOptions o;
    o.model = m;
    const Dispatch d = dispatch(map, shape.top_k, src, o);
    std::vector<std::int64_t> got_expert(shape.experts, 0);
    for (int r = 0; r < shape.ranks; ++r) {
      const RecvBuffer& b = d.ranks[r];
      CHECK(b.total_recv == ref_rank[r]);
      CHECK(b.overflow == 0);
      for (std::int64_t i = 0; i < b.total_recv; ++i) {
        if (b.target[i] >= 0) {
          ++got_expert[b.target[i]];
          continue;
        }
        const auto& s = src[b.src_rank[i]];
        for (int k = 0; k < shape.top_k; ++k) {
          const int id = s.ids[b.src_token[i] * shape.top_k + k];
          if (id >= 0 && map.rank_of[id] == r) ++got_expert[id];
        }
      }
      if (expert_major(m))  // recv_count per local expert
        for (int e = 0; e < map.num_local(r); ++e)
          CHECK(b.expert_begin[e + 1] - b.expert_begin[e] == ref_expert[map.global_of(r, e)]);
    }
    CHECK(got_expert == ref_expert);
    // The streaming statistics count the same rows.
    StatsInput si;
    si.map = &map;
    si.top_k = shape.top_k;
    si.hidden = shape.hidden;
    si.token_dtype = DType::f32;
    si.dispatch = o;
    si.consumer.model = default_consumer(m);
    const RoutingStats st = routing_stats(si, src);
    CHECK(st.rows_per_rank == ref_rank);
    CHECK(st.rows_per_expert == ref_expert);
    CHECK(st.needed_per_expert == ref_expert);
  }
}

TEST_CASE("every received row is its decoded source row, with the model's id space") {
  const Trace tr = test::make_trace({});
  const ExpertMap map = make_expert_map(tr.config);
  const auto src = sources_of(tr);
  const int K = tr.config.top_k;
  for (auto m : kAll) {
    CAPTURE(name(m));
    DispatchOptions o;
    o.model = m;
    const Dispatch d = dispatch(map, K, src, o);
    for (int r = 0; r < tr.config.num_ranks; ++r) {
      const RecvBuffer& b = d.ranks[r];
      std::set<std::int64_t> positions;
      for (std::int64_t i = 0; i < b.total_recv; ++i) {
        CAPTURE(r);
        CAPTURE(i);
        int sr = -1, slot = -1;
        std::int64_t tok = -1;
        const SrcPosEncoding enc = rank_dedup(m) ? SrcPosEncoding::flat : SrcPosEncoding::pair;
        REQUIRE(decode_src_pos(enc, tr.config.num_ranks, d.max_tokens, K, b.src_pos[i], sr, tok, slot));
        CHECK(sr == b.src_rank[i]);
        CHECK(tok == b.src_token[i]);
        CHECK(positions.insert(b.src_pos[i]).second);  // unique, as MORI's test asks
        // The origin-encoded payload: x[0] = rank, x[1] = token of the source.
        const auto& x = tr.layers[0].ranks[sr].x;
        CHECK(x[tok * tr.config.hidden + 0] == sr);
        CHECK(x[tok * tr.config.hidden + 1] == tok);
        const std::int32_t* sid = &src[sr].ids[tok * K];
        const float* sw = &src[sr].weights[tok * K];
        for (int k = 0; k < K; ++k) {
          const int got = b.ids[i * K + k];
          const float w = b.weights[i * K + k];
          switch (id_space(m)) {
            case IdSpace::global:
              CHECK(got == sid[k]);
              CHECK(w == sw[k]);
              break;
            case IdSpace::local: {
              const bool local = sid[k] >= 0 && sid[k] / map.max_local == r;
              CHECK(got == (local ? sid[k] - r * map.max_local : -1));
              CHECK(w == (local ? sw[k] : 0.0f));
              break;
            }
            case IdSpace::implied:
              CHECK(got == (k == b.slot[i] ? sid[k] - r * map.max_local : -1));
              break;
          }
        }
        if (!rank_dedup(m)) CHECK(b.target[i] == sid[b.slot[i]]);
      }
    }
  }
}

TEST_CASE("deepep-ht rows are ordered by source rank; expert-major rows by local expert") {
  const Trace tr = test::make_trace({});
  const ExpertMap map = make_expert_map(tr.config);
  DispatchOptions o;
  o.model = DispatchModel::deepep_ht;
  const Dispatch d = dispatch(map, tr.config.top_k, sources_of(tr), o);
  for (const auto& b : d.ranks)
    for (std::int64_t i = 1; i < b.total_recv; ++i) CHECK(b.src_rank[i - 1] <= b.src_rank[i]);
  o.model = DispatchModel::deepep_ll;
  const Dispatch ll = dispatch(map, tr.config.top_k, sources_of(tr), o);
  for (int r = 0; r < tr.config.num_ranks; ++r)
    for (int e = 0; e < map.num_local(r); ++e)
      for (auto i = ll.ranks[r].expert_begin[e]; i < ll.ranks[r].expert_begin[e + 1]; ++i)
        CHECK(map.local_of[ll.ranks[r].target[i]] == e);
}

TEST_CASE("a shuffle seed permutes rows but keeps every (source, slot) row once") {
  const Trace tr = test::make_trace({});
  const ExpertMap map = make_expert_map(tr.config);
  DispatchOptions o;
  const Dispatch canon = dispatch(map, tr.config.top_k, sources_of(tr), o);
  o.shuffle = true;
  o.shuffle_seed = 42;
  const Dispatch shuf = dispatch(map, tr.config.top_k, sources_of(tr), o);
  const Dispatch again = dispatch(map, tr.config.top_k, sources_of(tr), o);
  bool moved = false;
  for (int r = 0; r < tr.config.num_ranks; ++r) {
    std::multiset<std::int64_t> a(canon.ranks[r].src_pos.begin(), canon.ranks[r].src_pos.end());
    std::multiset<std::int64_t> b(shuf.ranks[r].src_pos.begin(), shuf.ranks[r].src_pos.end());
    CHECK(a == b);
    moved = moved || canon.ranks[r].src_pos != shuf.ranks[r].src_pos;
    CHECK(shuf.ranks[r].src_pos == again.ranks[r].src_pos);  // seeded, so reproducible
  }
  CHECK(moved);
}

TEST_CASE("mori receive overflow: an error by default, a silent drop when asked") {
  test::TraceShape shape;
  shape.tokens = {12, 12, 12, 12};
  shape.minus_one_rate = 0;
  const Trace tr = test::make_trace(shape);
  const ExpertMap map = make_expert_map(tr.config);
  DispatchOptions o;
  o.max_total_recv = 10;
  CHECK_THROWS_WITH_AS(dispatch(map, shape.top_k, sources_of(tr), o),
                       doctest::Contains("rank 0 receive buffer overflow"), Error);
  o.overflow = Overflow::drop;
  const Dispatch d = dispatch(map, shape.top_k, sources_of(tr), o);
  std::vector<std::int64_t> ref_rank, ref_expert;
  reference_counts(tr, true, ref_rank, ref_expert);
  for (int r = 0; r < shape.ranks; ++r) {
    CHECK(d.ranks[r].total_recv == 10);
    CHECK(d.ranks[r].buffer_rows == 10);
    CHECK(d.ranks[r].overflow == ref_rank[r] - 10);
  }
  // A dropped row leaves its slots without a row: combine gets nothing back for them.
  int missing = 0;
  for (const auto& rows : d.slot_row)
    for (auto v : rows) missing += v < 0;
  CHECK(missing > 0);
}

TEST_CASE("old mori sends a -1 slot to rank 0 (truncating -1 / E_local); current mori skips it") {
  test::TraceShape shape;
  shape.tokens = {1, 0, 0, 0};
  Trace tr = test::make_trace(shape);
  tr.layers[0].ranks[0].topk_ids = {5, 6, -1, 13};  // ranks 1, 1, none, 3
  const ExpertMap map = make_expert_map(tr.config);
  DispatchOptions o;
  Dispatch d = dispatch(map, 4, sources_of(tr), o);
  CHECK(d.ranks[0].total_recv == 0);
  CHECK(d.ranks[1].total_recv == 1);
  CHECK(d.ranks[3].total_recv == 1);
  o.negative = NegativeIds::rank0;
  d = dispatch(map, 4, sources_of(tr), o);
  CHECK(d.ranks[0].total_recv == 1);
  CHECK(d.ranks[0].slot[0] == 2);
  CHECK(d.ranks[0].ids == std::vector<std::int32_t>{5, 6, -1, 13});  // verbatim
}

TEST_CASE("src_token_pos encodings: flat is unambiguous, legacy collides once tokens exceed the per-rank maximum") {
  int r, slot;
  std::int64_t t;
  CHECK(encode_src_pos(SrcPosEncoding::flat, 8, 4096, 8, 3, 17, 0) == 3 * 8 * 4096 + 17);
  CHECK(encode_src_pos(SrcPosEncoding::legacy, 8, 4096, 8, 3, 17, 0) == 3 * 4096 + 17);
  REQUIRE(decode_src_pos(SrcPosEncoding::pair, 8, 4096, 8, encode_src_pos(SrcPosEncoding::pair, 8, 4096, 8, 5, 99, 6),
                         r, t, slot));
  CHECK((r == 5 && t == 99 && slot == 6));
  // Token 5 of rank 0 and token 1 of rank 1 share a legacy position when max_tokens is 4.
  CHECK(encode_src_pos(SrcPosEncoding::legacy, 2, 4, 8, 0, 5, 0) == encode_src_pos(SrcPosEncoding::legacy, 2, 4, 8, 1, 1, 0));
}

TEST_CASE("src_token_pos from a damaged file: ranks past 2^31, overflowing strides and zero sizes decode to nothing") {
  int r = 7, slot;
  std::int64_t t;
  // Source rank 2^31: as int it would wrap negative and pass a `< R` check.
  CHECK_FALSE(decode_src_pos(SrcPosEncoding::legacy, 8, 4096, 8, (std::int64_t{1} << 31) * 4096 + 3, r, t, slot));
  CHECK_FALSE(decode_src_pos(SrcPosEncoding::flat, 8, 4096, 8, (std::int64_t{1} << 31) * 8 * 4096, r, t, slot));
  CHECK_FALSE(decode_src_pos(SrcPosEncoding::flat, 8, std::int64_t{1} << 61, 8, 5, r, t, slot));  // 8 * 2^61 overflows
  CHECK_FALSE(decode_src_pos(SrcPosEncoding::pair, 8, 4096, 0, 5, r, t, slot));                   // top_k 0
  CHECK_FALSE(decode_src_pos(SrcPosEncoding::flat, 0, 4096, 8, 5, r, t, slot));                   // no ranks
  CHECK(r == 7);  // untouched on failure
  REQUIRE(decode_src_pos(SrcPosEncoding::legacy, 8, 4096, 8, 7 * 4096 + 4095, r, t, slot));
  CHECK((r == 7 && t == 4095));
}

TEST_CASE("EPLB: logical ids pick a replica by policy") {
  Trace tr = test::make_trace({});
  TraceConfig& c = tr.config;
  // 16 physical slots hold 12 logical experts; logical 0..3 have a second replica on rank 3.
  c.placement.kind = PlacementKind::eplb;
  c.placement.num_logical = 12;
  for (int e = 0; e < 16; ++e) c.placement.physical_to_logical[e] = e < 12 ? e : e - 12;
  const ExpertMap map = make_expert_map(c);
  CHECK(map.replicas_of_logical[2] == std::vector<std::int32_t>{2, 14});
  std::vector<std::int32_t> ids{2, -1, 2, 7};
  auto first = ids;
  resolve_logical_ids(map, ReplicaPolicy::first, 3, 0, 2, first);
  CHECK(first == std::vector<std::int32_t>{2, -1, 2, 7});
  auto rr = ids;
  resolve_logical_ids(map, ReplicaPolicy::round_robin, 0, 0, 2, rr);
  CHECK(rr == std::vector<std::int32_t>{2, -1, 14, 7});  // token 0 -> replica 0, token 1 -> replica 1
  auto same = ids;
  resolve_logical_ids(map, ReplicaPolicy::same_rank, 3, 0, 2, same);
  CHECK(same == std::vector<std::int32_t>{14, -1, 14, 7});
}

TEST_CASE("--whole-buffer: rows past total_recv are read as a zeroed buffer and cost computations") {
  test::TraceShape shape;
  shape.minus_one_rate = 0;
  const Trace tr = test::make_trace(shape);
  const ExpertMap map = make_expert_map(tr.config);
  const auto src = sources_of(tr);
  StatsInput si;
  si.map = &map;
  si.top_k = shape.top_k;
  si.hidden = shape.hidden;
  si.token_dtype = DType::f32;
  const RoutingStats base = routing_stats(si, src);
  si.consumer.whole_buffer = true;
  const RoutingStats whole = routing_stats(si, src);
  for (int r = 0; r < shape.ranks; ++r) {
    CAPTURE(r);
    const std::int64_t stale = whole.buffer_rows_per_rank[r] - whole.rows_per_rank[r];
    CHECK(stale > 0);
    CHECK(whole.stale_rows_per_rank[r] == stale);
    // A zeroed row's ids are all expert 0: local to rank 0 only, where aiter-mask computes it K times.
    CHECK(whole.performed_per_rank[r] == base.performed_per_rank[r] + (r == 0 ? stale * shape.top_k : 0));
  }
  CHECK(whole.waste() > 1.0);
  const PairingVerdict v = judge_pairing(DispatchModel::mori, si.consumer, CombineModel::rank_sum);
  CHECK_FALSE(v.correct);
  CHECK(v.reasons.at(0).find("reads rows past total_recv") != std::string::npos);
  si.consumer.model = ConsumerModel::all_k;  // wraps every zero id onto a local expert on every rank
  const RoutingStats allk = routing_stats(si, src);
  CHECK(allk.total_performed() == (allk.total_rows() + [&] {
          std::int64_t s = 0;
          for (auto v : allk.stale_rows_per_rank) s += v;
          return s;
        }()) * shape.top_k);
}

TEST_CASE("with a shuffled silent drop, the statistics count the rows the dispatch kept") {
  test::TraceShape shape;
  shape.tokens = {12, 12, 12, 12};
  shape.minus_one_rate = 0;
  const Trace tr = test::make_trace(shape);
  const ExpertMap map = make_expert_map(tr.config);
  const auto src = sources_of(tr);
  DispatchOptions o;
  o.max_total_recv = 10;
  o.overflow = Overflow::drop;
  o.shuffle = true;
  o.shuffle_seed = 3;
  const Dispatch d = dispatch(map, shape.top_k, src, o);
  StatsInput si;
  si.map = &map;
  si.top_k = shape.top_k;
  si.hidden = shape.hidden;
  si.token_dtype = DType::f32;
  si.dispatch = o;
  const RoutingStats s = routing_stats(si, src, &d);
  std::vector<std::int64_t> per_expert(shape.experts, 0);
  for (int r = 0; r < shape.ranks; ++r) {
    CHECK(s.rows_per_rank[r] == d.ranks[r].total_recv);
    CHECK(s.overflow_per_rank[r] == d.ranks[r].overflow);
    for (std::int64_t i = 0; i < d.ranks[r].total_recv; ++i)
      for (int k = 0; k < shape.top_k; ++k) {
        const int id = src[d.ranks[r].src_rank[i]].ids[d.ranks[r].src_token[i] * shape.top_k + k];
        if (id >= 0 && map.rank_of[id] == r) ++per_expert[id];
      }
  }
  CHECK(s.rows_per_expert == per_expert);
  CHECK(s.performed_per_expert == per_expert);  // aiter-mask computes exactly the kept rows' local slots
}
