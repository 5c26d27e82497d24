// The counting pass of the routing statistics (sim/stats_count.cpp) against the row pass that
// routes every row through route_token and plan_row: every statistic equal, for every dispatch
// model x consumer x option, on routings with -1 slots, repeated ids in a token, skewed experts,
// ranks without tokens and a scattered uneven placement; the same numbers for any thread count;
// and a capacity exceeded left to the row pass (dropped rows, or its error).
#include <doctest/doctest.h>

#include <optional>

#include "error.hpp"
#include "stats.hpp"

using namespace moesim;
using namespace moesim::sim;

namespace {

struct Shape {
  int ranks, experts, top_k;
  std::vector<std::int64_t> tokens;
  double minus_one, repeat, skew;  // rates: a -1 slot, a slot repeating the token's previous id, an id from the first 3 experts
  bool scattered;                  // experts placed on ranks by a hash, some ranks without experts
};

// Deterministic routing: a 64-bit LCG per shape.
struct Lcg {
  std::uint64_t s;
  double next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) * 0x1p-53;
  }
};

std::vector<SourceRouting> routing(const Shape& sh, std::uint64_t seed) {
  Lcg g{seed};
  std::vector<SourceRouting> src(sh.ranks);
  for (int r = 0; r < sh.ranks; ++r) {
    src[r].num_tokens = sh.tokens[r];
    for (std::int64_t t = 0; t < sh.tokens[r]; ++t)
      for (int k = 0; k < sh.top_k; ++k) {
        const double u = g.next();
        std::int32_t id = static_cast<std::int32_t>(g.next() * sh.experts);
        if (u < sh.minus_one) id = -1;
        else if (u < sh.minus_one + sh.skew) id = static_cast<std::int32_t>(g.next() * 3);
        else if (k > 0 && u < sh.minus_one + sh.skew + sh.repeat) id = std::max(0, src[r].ids.back());
        src[r].ids.push_back(id);
        src[r].weights.push_back(static_cast<float>(r * 1000 + t) + 0.25f * static_cast<float>(k));
      }
  }
  return src;
}

TraceConfig config_of(const Shape& sh) {
  TraceConfig c;
  c.num_ranks = sh.ranks;
  c.num_experts = sh.experts;
  c.top_k = sh.top_k;
  c.placement = contiguous_placement(sh.experts, sh.ranks);
  if (sh.scattered) {
    c.placement.kind = PlacementKind::explicit_map;
    for (int e = 0; e < sh.experts; ++e) c.placement.expert_to_rank[e] = (e * 7 + e / 5) % (sh.ranks - 1);  // last rank: none
  }
  return c;
}

void check_equal(const RoutingStats& a, const RoutingStats& b) {
  CHECK(a.num_ranks == b.num_ranks);
  CHECK(a.num_experts == b.num_experts);
  CHECK(a.tokens == b.tokens);
  CHECK(a.pairs == b.pairs);
  CHECK(a.rows_per_rank == b.rows_per_rank);
  CHECK(a.sources_per_rank == b.sources_per_rank);
  CHECK(a.overflow_per_rank == b.overflow_per_rank);
  CHECK(a.stale_rows_per_rank == b.stale_rows_per_rank);
  CHECK(a.buffer_rows_per_rank == b.buffer_rows_per_rank);
  CHECK(a.needed_per_rank == b.needed_per_rank);
  CHECK(a.performed_per_rank == b.performed_per_rank);
  CHECK(a.rows_per_expert == b.rows_per_expert);
  CHECK(a.needed_per_expert == b.needed_per_expert);
  CHECK(a.performed_per_expert == b.performed_per_expert);
  CHECK(a.dispatch_bytes == b.dispatch_bytes);
  CHECK(a.combine_bytes == b.combine_bytes);
}

const Shape kShapes[] = {
    {4, 16, 4, {7, 12, 0, 9}, 0.1, 0.05, 0.0, false},
    {8, 64, 8, {40, 0, 33, 17, 64, 5, 1, 29}, 0.2, 0.1, 0.3, false},
    {6, 20, 3, {15, 9, 0, 11, 30, 4}, 0.15, 0.1, 0.2, true},
    {16, 128, 8, std::vector<std::int64_t>(16, 50), 0.0, 0.0, 0.0, false},
};

}  // namespace

TEST_CASE("the counting pass gives every statistic of the row pass, for every model, consumer and option") {
  int compared = 0, fell_back = 0;
  for (std::size_t i = 0; i < std::size(kShapes); ++i) {
    const Shape& sh = kShapes[i];
    const TraceConfig c = config_of(sh);
    const ExpertMap map = make_expert_map(c);
    const auto src = routing(sh, 11 + i);
    for (DispatchModel d : {DispatchModel::mori, DispatchModel::deepep_ht, DispatchModel::deepep_ll, DispatchModel::pplx,
                            DispatchModel::pairs})
      for (ConsumerModel cm : {ConsumerModel::aiter_mask, ConsumerModel::deepep_local, ConsumerModel::per_expert,
                               ConsumerModel::all_k, ConsumerModel::dedup_filter, ConsumerModel::target_expert})
        for (NegativeIds neg : {NegativeIds::skip, NegativeIds::rank0})
          for (bool whole : {false, true})
            for (NonLocal nl : {NonLocal::wrap, NonLocal::clamp, NonLocal::mask}) {
              if (cm != ConsumerModel::all_k && nl != NonLocal::wrap) continue;
              CAPTURE(i);
              CAPTURE(name(d));
              CAPTURE(name(cm));
              CAPTURE(static_cast<int>(neg));
              CAPTURE(whole);
              CAPTURE(name(nl));
              StatsInput in;
              in.map = &map;
              in.top_k = sh.top_k;
              in.hidden = 24;
              in.token_dtype = i % 2 ? DType::e4m3 : DType::bf16;
              in.scale_block = 16;
              in.dispatch.model = d;
              in.dispatch.negative = neg;
              in.consumer = {cm, nl, whole};
              RoutingStats rows;
              try {
                rows = routing_stats_by_rows(in, src);
              } catch (const Error&) {
                // deepep-ll's max_tokens slots per (expert, source rank) overflow on repeated ids:
                // the counting pass must see it and leave the answer to the row pass.
                REQUIRE(d == DispatchModel::deepep_ll);
                CHECK_FALSE(routing_stats_counted(in, src));
                ++fell_back;
                continue;
              }
              const std::optional<RoutingStats> counted = routing_stats_counted(in, src);
              REQUIRE(counted);
              check_equal(*counted, rows);
              in.threads = 3;
              check_equal(*routing_stats_counted(in, src), rows);
              ++compared;
            }
  }
  MESSAGE(compared << " configurations compared");
  CHECK(compared + fell_back == 4 * 5 * (5 * 2 * 2 + 3 * 2 * 2));
  CHECK(fell_back > 0);  // a per-source overflow was among them
}

TEST_CASE("a capacity exceeded goes to the row pass: the rows it drops, or its error") {
  const Shape& sh = kShapes[1];
  const TraceConfig c = config_of(sh);
  const ExpertMap map = make_expert_map(c);
  const auto src = routing(sh, 12);
  for (DispatchModel d : {DispatchModel::mori, DispatchModel::deepep_ll, DispatchModel::pairs}) {
    CAPTURE(name(d));
    StatsInput in;
    in.map = &map;
    in.top_k = sh.top_k;
    in.hidden = 24;
    in.dispatch.model = d;
    in.consumer.model = d == DispatchModel::deepep_ll ? ConsumerModel::per_expert : ConsumerModel::aiter_mask;
    in.threads = 2;
    // mori and pairs: a receive capacity of 20 rows; deepep-ll: 2 tokens per rank, per expert segment.
    if (d == DispatchModel::deepep_ll) in.dispatch.max_tokens_per_rank = 2, in.max_tokens = 2;
    else in.dispatch.max_total_recv = 20;
    in.dispatch.overflow = Overflow::drop;
    CHECK_FALSE(routing_stats_counted(in, src));
    const RoutingStats s = routing_stats(in, src);
    CHECK(s.total_overflow() > 0);
    check_equal(s, routing_stats_by_rows(in, src));
    in.dispatch.overflow = Overflow::error;
    CHECK_THROWS_AS(routing_stats(in, src), Error);
  }
}
