// The counting pass of the routing statistics (stats.hpp). Without a capacity exceeded, every
// statistic follows from counts over the ids: one row per (token, destination) for rank-dedup
// layouts and one per valid slot otherwise; every valid slot's expert is received exactly once
// (rows_per_expert == needed_per_expert); and for the consumers that compute each valid slot
// once where its expert lives (the correct pairings) the performed counts are the needed ones.
// Only the other consumers plan their jobs row by row, through the same plan_row as the row pass.
#include <algorithm>
#include <chrono>

#include "parallel.hpp"
#include "route.hpp"
#include "stats_frame.hpp"

namespace moesim::sim {

namespace {

// How the consumer's jobs follow from the ids.
enum class Jobs { needed, none, by_rows };

Jobs jobs_of(DispatchModel m, ConsumerModel c) {
  switch (c) {
    case ConsumerModel::aiter_mask:  // global ids, one row per destination: each slot where its expert is
      return m == DispatchModel::mori ? Jobs::needed : Jobs::by_rows;
    case ConsumerModel::dedup_filter:  // global ids, the first row per destination
      return id_space(m) == IdSpace::global ? Jobs::needed : Jobs::by_rows;
    case ConsumerModel::deepep_local:  // local or implied ids: each slot's own expert once
      return id_space(m) == IdSpace::global ? Jobs::by_rows : Jobs::needed;
    case ConsumerModel::per_expert:
    case ConsumerModel::target_expert:  // one job per row that names its expert
      return rank_dedup(m) ? Jobs::none : Jobs::needed;
    case ConsumerModel::all_k: return Jobs::by_rows;
  }
  return Jobs::by_rows;
}

// One worker's counters, summed after the pass (integers: the order cannot change the sums).
// Pairs per expert count in 32 bits, which keeps the hot counters in L1, and move into 64 bits
// before they could overflow.
struct Counts {
  std::vector<std::int64_t> needed_expert, performed_expert;  // [E]
  std::vector<std::uint32_t> needed32;                        // [E] not yet in needed_expert
  std::int64_t pending = 0;                                   // pairs counted in needed32
  std::vector<std::int64_t> sources, performed_rank;          // [R]
  std::vector<std::uint32_t> seen;  // [R] the last token (worker's running number) with a row here
  std::uint32_t token = 0;
  void flush() {
    for (std::size_t e = 0; e < needed32.size(); ++e) needed_expert[e] += needed32[e], needed32[e] = 0;
    pending = 0;
  }
};

void add(std::vector<std::int64_t>& to, const std::vector<std::int64_t>& from) {
  for (std::size_t i = 0; i < to.size(); ++i) to[i] += from[i];
}

// The rank of an expert: rank_of[id], or for a contiguous placement id / E_local by a multiply
// and a shift (exact for every 0 <= id < 2^31: Granlund and Montgomery's m = floor(2^(31+l) / p)
// + 1, l = ceil(log2 p)), which keeps rank_of out of the cache.
struct RankOf {
  const std::int32_t* table;
  std::uint64_t m = 0;
  int shift = 0;
  explicit RankOf(const ExpertMap& map) : table(map.rank_of.data()) {
    if (!map.contiguous) return;
    const std::uint64_t p = static_cast<std::uint64_t>(map.num_experts / map.num_ranks);
    int l = 0;
    while ((std::uint64_t{1} << l) < p) ++l;
    shift = 31 + l;
    m = (std::uint64_t{1} << shift) / p + 1;
  }
};

// One source rank's tokens into a worker's counters and `to` [R], the rows it sends each
// destination. Rank-dedup layouts: sources == rows, so only `to` counts them. Everything the loop
// touches is a local pointer, so stores through one cannot make the compiler reload the others.
template <bool kDedup, bool kMinusOneToRank0, bool kPlan, bool kContiguous>
void count_source(const StatsInput& in, const RankOf& rank, const SourceRouting& src, Counts& c, std::int64_t* to) {
  const ExpertMap& map = *in.map;
  const int K = in.top_k;
  if (c.pending + src.num_tokens * K > std::int64_t{UINT32_MAX}) c.flush();
  c.pending += src.num_tokens * K;
  // Locals: a store through `needed` could otherwise alias the divisor and force a reload.
  const std::int32_t* rank_of = rank.table;
  const std::uint64_t m = rank.m;
  const int shift = rank.shift;
  std::uint32_t* needed = c.needed32.data();
  std::int64_t* sources = c.sources.data();
  std::uint32_t* seen = c.seen.data();
  std::uint32_t token = c.token;
  std::int32_t ids[64];
  float wts[64];
  Job planned[64];
  const std::int32_t* row = src.ids.data();
  for (std::int64_t t = 0; t < src.num_tokens; ++t, row += K) {
    if (++token == 0) {  // the running number wrapped: no stamp may look like this token's
      std::fill(c.seen.begin(), c.seen.end(), 0u);
      token = 1;
    }
    for (int k = 0; k < K; ++k) {
      const std::int32_t id = row[k];
      int d;
      if (id >= 0) {
        ++needed[id];
        if constexpr (kContiguous) d = static_cast<int>((static_cast<std::uint64_t>(id) * m) >> shift);
        else d = rank_of[id];
      } else if (kMinusOneToRank0) {
        d = 0;
      } else {
        continue;
      }
      const bool first = seen[d] != token;
      seen[d] = token;
      if (kDedup ? !first : id < 0) continue;  // no row of its own
      ++to[d];
      if (!kDedup) sources[d] += first;
      if constexpr (kPlan) {
        const DispatchModel m = in.dispatch.model;
        const RowDest rd{d, k, kDedup ? -1 : id};
        const std::int32_t* got = row;  // global ids arrive verbatim
        if (id_space(m) != IdSpace::global) {
          deliver_row(m, map, K, row, &src.weights[t * K], rd, ids, wts);
          got = ids;
        }
        const int nj = plan_row(in.consumer, map, d, K, got, rd.target, rd.slot, first, planned);
        c.performed_rank[d] += nj;
        for (int j = 0; j < nj; ++j) ++c.performed_expert[planned[j].expert];
      }
    }
  }
  c.token = token;
}

using CountFn = void (*)(const StatsInput&, const RankOf&, const SourceRouting&, Counts&, std::int64_t*);
template <bool kDedup, bool kMinusOneToRank0, bool kPlan>
CountFn count_fn(bool contiguous) {
  return contiguous ? count_source<kDedup, kMinusOneToRank0, kPlan, true>
                    : count_source<kDedup, kMinusOneToRank0, kPlan, false>;
}
template <bool kDedup, bool kMinusOneToRank0>
CountFn count_fn(bool plan, bool contiguous) {
  return plan ? count_fn<kDedup, kMinusOneToRank0, true>(contiguous)
              : count_fn<kDedup, kMinusOneToRank0, false>(contiguous);
}

// deepep-ll: whether every (expert, source rank) block holds its rows (one per slot naming the expert).
bool per_source_fits(const std::vector<SourceRouting>& sources, int E, int K, std::int64_t cap, int threads) {
  std::vector<char> over(sources.size(), 0);
  std::vector<std::vector<std::int64_t>> seen(workers_for(sources.size(), threads));
  parallel_items(sources.size(), threads, [&](std::size_t r, int w) {
    std::vector<std::int64_t>& n = seen[static_cast<std::size_t>(w)];
    n.assign(static_cast<std::size_t>(E), 0);
    const SourceRouting& src = sources[r];
    for (std::int64_t i = 0; i < src.num_tokens * K; ++i)
      if (src.ids[i] >= 0 && ++n[src.ids[i]] > cap) over[r] = 1;
  });
  return std::find(over.begin(), over.end(), 1) == over.end();
}

}  // namespace

std::optional<RoutingStats> routing_stats_counted(const StatsInput& in, const std::vector<SourceRouting>& sources) {
  const auto start = std::chrono::steady_clock::now();
  const ExpertMap& map = *in.map;
  const int R = map.num_ranks, E = map.num_experts;
  const DispatchOptions& o = in.dispatch;
  StatsFrame f = start_stats(in, sources);
  RoutingStats& s = f.stats;
  const bool dedup = rank_dedup(o.model);
  const bool minus_one_to_rank0 = o.model == DispatchModel::mori && o.negative == NegativeIds::rank0;
  const Jobs jobs = jobs_of(o.model, in.consumer.model);
  const auto& rank_of = map.rank_of;

  std::vector<Counts> counts(static_cast<std::size_t>(workers_for(static_cast<std::size_t>(R), in.threads)));
  for (Counts& c : counts) {
    c.needed_expert.assign(E, 0);
    c.needed32.assign(E, 0);
    c.sources.assign(R, 0);
    if (jobs == Jobs::by_rows) c.performed_expert.assign(E, 0), c.performed_rank.assign(R, 0);
    c.seen.assign(R, 0);
  }
  const bool plan = jobs == Jobs::by_rows;
  const bool contiguous = map.contiguous;
  const CountFn count = dedup ? (minus_one_to_rank0 ? count_fn<true, true>(plan, contiguous)
                                                    : count_fn<true, false>(plan, contiguous))
                              : count_fn<false, false>(plan, contiguous);
  const RankOf rank(map);
  // Rows of source r to each destination, counted in place in dispatch_bytes' row r.
  parallel_items(static_cast<std::size_t>(R), in.threads, [&](std::size_t r, int w) {
    count(in, rank, sources[r], counts[static_cast<std::size_t>(w)], &s.dispatch_bytes[r * static_cast<std::size_t>(R)]);
  });
  for (Counts& c : counts) {
    c.flush();
    add(s.needed_per_expert, c.needed_expert);
    add(s.sources_per_rank, c.sources);
    if (plan) add(s.performed_per_expert, c.performed_expert), add(s.performed_per_rank, c.performed_rank);
  }
  for (const auto& src : sources) s.tokens += src.num_tokens;
  for (int e = 0; e < E; ++e) s.needed_per_rank[rank_of[e]] += s.needed_per_expert[e], s.pairs += s.needed_per_expert[e];
  // Rows into bytes both ways, combine's matrix the transpose, in tiles that stay in cache.
  const std::size_t n = static_cast<std::size_t>(R), tile = 64;
  for (std::size_t r0 = 0; r0 < n; r0 += tile)
    for (std::size_t d0 = 0; d0 < n; d0 += tile)
      for (std::size_t r = r0; r < std::min(n, r0 + tile); ++r)
        for (std::size_t d = d0; d < std::min(n, d0 + tile); ++d) {
          std::int64_t& rows = s.dispatch_bytes[r * n + d];
          s.rows_per_rank[d] += rows;
          s.combine_bytes[d * n + r] = rows * f.back_row;
          rows *= f.send_row;
        }
  if (dedup) s.sources_per_rank = s.rows_per_rank;
  s.rows_per_expert = s.needed_per_expert;
  if (jobs == Jobs::needed) s.performed_per_expert = s.needed_per_expert, s.performed_per_rank = s.needed_per_rank;
  // A capacity exceeded anywhere: the row pass says which rows arrived in time.
  for (int d = 0; d < R; ++d)
    if (!f.expert_major && s.rows_per_rank[d] > f.cap) return std::nullopt;
  if (f.expert_major && !f.per_source)
    for (int e = 0; e < E; ++e)
      if (s.rows_per_expert[e] > f.cap) return std::nullopt;
  if (f.per_source && !per_source_fits(sources, E, in.top_k, f.cap, in.threads)) return std::nullopt;
  finish_stats(in, s, start);
  return std::move(s);
}

}  // namespace moesim::sim
