// The receive layouts that DeepEP's own tests check (tests/legacy/test_intranode.py,
// test_low_latency.py): normal mode grouped by ascending source rank; low latency with one
// (begin, count) range per source rank inside each local expert's block, max_tokens slots per
// (expert, source rank), and layout_range / packed_recv_count as the library returns them. A
// shuffle seed may permute only what the library leaves to arrival order.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "dispatch.hpp"
#include "error.hpp"
#include "sim_fixtures.hpp"
#include "stats.hpp"

using namespace moesim;
using namespace moesim::sim;
using test::sources_of;

namespace {

Trace busy_trace() {
  test::TraceShape shape;
  shape.experts = 8;  // two local experts per rank: many rows per (expert, source)
  shape.tokens = {23, 17, 30, 11};
  shape.minus_one_rate = 0.05;
  return test::make_trace(shape);
}

// (begin, count) of DeepEP's packing: begin in the high 32 bits, count in the low ones.
std::pair<std::int64_t, std::int64_t> unpack(std::int64_t v) { return {v >> 32, v & 0xffffffffLL}; }

}  // namespace

TEST_CASE("deepep-ll layout_range: each source rank's rows are one (begin, count) range of its expert's block") {
  const Trace tr = busy_trace();
  const ExpertMap map = make_expert_map(tr.config);
  const int R = tr.config.num_ranks;
  for (std::uint64_t seed : {0, 1, 2, 3, 4, 5}) {
    CAPTURE(seed);
    DispatchOptions o;
    o.model = DispatchModel::deepep_ll;
    o.shuffle = seed != 0;
    o.shuffle_seed = seed;
    const Dispatch d = dispatch(map, tr.config.top_k, sources_of(tr), o);
    for (int r = 0; r < R; ++r) {
      const RecvBuffer& b = d.ranks[r];
      const int E_local = map.num_local(r);
      REQUIRE(b.layout_range.size() == static_cast<std::size_t>(E_local) * R);
      for (int e = 0; e < E_local; ++e) {
        const std::int64_t base = b.expert_begin[e], count = b.expert_begin[e + 1] - base;
        std::int64_t sum = 0;
        std::vector<int> covered(count, 0);
        for (int s = 0; s < R; ++s) {
          const auto [begin, n] = unpack(b.layout_range[static_cast<std::size_t>(e) * R + s]);
          sum += n;
          REQUIRE(begin + n <= count);
          std::set<std::int32_t> tokens;
          for (std::int64_t i = begin; i < begin + n; ++i) {
            ++covered[i];
            CHECK(b.src_rank[base + i] == s);
            CHECK(map.local_of[b.target[base + i]] == e);
            tokens.insert(b.src_token[base + i]);
          }
          // Without duplicate ids a source sends one row per token to an expert.
          CHECK(static_cast<std::int64_t>(tokens.size()) == n);
          if (seed == 0 && s > 0) {  // canonical: sources ascending, tokens ascending
            const auto [prev_begin, prev_n] = unpack(b.layout_range[static_cast<std::size_t>(e) * R + s - 1]);
            CHECK(begin == prev_begin + prev_n);
          }
        }
        CHECK(sum == count);  // packed_recv_count == sum of the ranges' counts, as DeepEP's test asserts
        for (int c : covered) CHECK(c == 1);
      }
    }
  }
}

TEST_CASE("--shuffle-seed permutes only what each library leaves unordered") {
  const Trace tr = busy_trace();
  const ExpertMap map = make_expert_map(tr.config);
  const int R = tr.config.num_ranks;
  auto run = [&](DispatchModel m, std::uint64_t seed) {
    DispatchOptions o;
    o.model = m;
    o.shuffle = true;
    o.shuffle_seed = seed;
    return dispatch(map, tr.config.top_k, sources_of(tr), o);
  };
  bool ht_moved = false, ll_sources_moved = false, ll_rows_moved = false, mori_interleaved = false;
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    const Dispatch ht = run(DispatchModel::deepep_ht, seed), ll = run(DispatchModel::deepep_ll, seed),
                   mori = run(DispatchModel::mori, seed);
    for (int r = 0; r < R; ++r) {
      // DeepEP normal mode: blocks by ascending source rank stay; only the order inside moves.
      const RecvBuffer& h = ht.ranks[r];
      for (std::int64_t i = 1; i < h.total_recv; ++i) {
        REQUIRE(h.src_rank[i - 1] <= h.src_rank[i]);
        if (h.src_rank[i - 1] == h.src_rank[i] && h.src_token[i - 1] > h.src_token[i]) ht_moved = true;
      }
      // DeepEP LL: the sources' ranges may come in any order, rows inside a range too.
      const RecvBuffer& l = ll.ranks[r];
      for (int e = 0; e < map.num_local(r); ++e) {
        std::vector<std::int32_t> runs;
        for (auto i = l.expert_begin[e]; i < l.expert_begin[e + 1]; ++i) {
          if (runs.empty() || runs.back() != l.src_rank[i]) runs.push_back(l.src_rank[i]);
          if (i > l.expert_begin[e] && l.src_rank[i - 1] == l.src_rank[i] && l.src_token[i - 1] > l.src_token[i])
            ll_rows_moved = true;
        }
        CHECK(std::set<std::int32_t>(runs.begin(), runs.end()).size() == runs.size());  // contiguous
        if (!std::is_sorted(runs.begin(), runs.end())) ll_sources_moved = true;
      }
      // MORI reserves slots with atomics across all sources: rows of different sources interleave.
      const RecvBuffer& m = mori.ranks[r];
      std::set<std::int32_t> done;
      for (std::int64_t i = 1; i < m.total_recv; ++i)
        if (m.src_rank[i] != m.src_rank[i - 1]) {
          if (done.count(m.src_rank[i])) mori_interleaved = true;
          done.insert(m.src_rank[i - 1]);
        }
    }
  }
  CHECK(ht_moved);
  CHECK(ll_sources_moved);
  CHECK(ll_rows_moved);
  CHECK(mori_interleaved);
}

TEST_CASE("deepep-ll has max_tokens slots per (expert, source rank): a hot expert or a duplicate id overflows its source's slots") {
  test::TraceShape shape;
  shape.tokens = {2, 1, 1, 0};
  Trace tr = test::make_trace(shape);
  auto& L = tr.layers[0].ranks;
  L[0].topk_ids = {0, 0, 5, 9, /**/ 0, 1, 2, 3};  // rank 0: expert 0 twice in token 0, again in token 1
  L[1].topk_ids = {0, 4, 8, 12};
  L[2].topk_ids = {0, 6, 10, 14};
  const ExpertMap map = make_expert_map(tr.config);
  DispatchOptions o;
  o.model = DispatchModel::deepep_ll;  // max_tokens: the largest rank, 2
  // Expert 0 gets 5 rows, under the R * max_tokens = 8 a per-expert capacity would allow; but
  // source 0 sends it 3 rows for its 2 slots.
  CHECK_THROWS_WITH_AS(dispatch(map, 4, sources_of(tr), o),
                       "rank 0 receive buffer overflow: 3 rows for 2 slots of local expert 0 from source rank 0 (raise "
                       "max tokens per rank, or --overflow drop to model the silent drop)",
                       Error);
  o.overflow = Overflow::drop;
  const Dispatch d = dispatch(map, 4, sources_of(tr), o);
  CHECK(d.ranks[0].overflow == 1);
  CHECK(d.ranks[0].expert_begin[1] == 4);  // 2 from source 0, 1 each from sources 1 and 2
  CHECK(unpack(d.ranks[0].layout_range[0 * 4 + 0]) == std::pair<std::int64_t, std::int64_t>{0, 2});
  CHECK(unpack(d.ranks[0].layout_range[0 * 4 + 1]) == std::pair<std::int64_t, std::int64_t>{2, 1});
  CHECK(unpack(d.ranks[0].layout_range[0 * 4 + 2]) == std::pair<std::int64_t, std::int64_t>{3, 1});
  // The routing-only statistics count the same drop.
  StatsInput si;
  si.map = &map;
  si.top_k = 4;
  si.hidden = shape.hidden;
  si.token_dtype = DType::f32;
  si.dispatch = o;
  const RoutingStats s = routing_stats(si, sources_of(tr));
  CHECK(s.overflow_per_rank == std::vector<std::int64_t>{1, 0, 0, 0});
  // A hot expert: with one slot per source (max tokens 1), rank 0's two tokens for expert 0 overflow
  // although the expert's block has room for R rows.
  L[0].topk_ids = {0, 5, 9, 13, /**/ 0, 6, 10, 14};
  L[1].topk_ids = {1, 4, 8, 12};
  L[2].topk_ids = {2, 7, 11, 15};
  o.overflow = Overflow::error;
  o.max_tokens_per_rank = 1;
  CHECK_THROWS_WITH_AS(dispatch(map, 4, sources_of(tr), o),
                       doctest::Contains("2 rows for 1 slots of local expert 0 from source rank 0"), Error);
  o.model = DispatchModel::pplx;  // pplx's per-expert block holds them
  CHECK_NOTHROW(dispatch(map, 4, sources_of(tr), o));
}
