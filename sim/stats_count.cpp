// The counting pass of the routing statistics (stats.hpp). Without a capacity exceeded, every
// statistic follows from counts over the ids: one row per (token, destination) for rank-dedup
// layouts and one per valid slot otherwise; every valid slot's expert is received exactly once
// (rows_per_expert == needed_per_expert); and for the consumers that compute each valid slot
// once where its expert lives (the correct pairings) the performed counts are the needed ones.
// Only the other consumers plan their jobs row by row, through the same plan_row as the row pass.
// The pass is bound by reading the ids (4 bytes a slot): per slot it bumps one counter of its
// expert and stamps its destination, and every per-destination figure of a source comes from
// those counters once the source is done.
#include <algorithm>
#include <chrono>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu_isa.hpp"
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
    case ConsumerModel::all_k:
    case ConsumerModel::identity: return Jobs::by_rows;  // planned row by row, as the row pass does
  }
  return Jobs::by_rows;
}

// One worker's counters, summed after the pass (integers: the order cannot change the sums).
// The hot loop touches only `hist` and `seen` (36 KiB at E = 8192, R = 1024: L1): a source's
// rows and sources per destination follow from its pairs per expert once the source is done,
// less the slots whose destination an earlier slot of the same token already had (`repeats`).
struct Counts {
  std::vector<std::uint32_t> hist;     // [E + 1] the current source's slots per expert; [E]: -1 slots sent to rank 0
  std::vector<std::uint32_t> repeats;  // [R] the current source's slots whose destination the token already had
  std::vector<std::uint32_t> seen;     // [R] the last token (worker's running number) with a slot there
  std::uint32_t token = 0;
  std::vector<std::int64_t> needed_expert, performed_expert;  // [E]
  std::vector<std::uint32_t> needed32;                        // [E] not yet in needed_expert
  std::int64_t pending = 0;                                   // pairs counted in needed32
  std::vector<std::int64_t> sources, rows, performed_rank;    // [R]
  std::vector<std::uint32_t> block;    // [kBlock, R] rows from each source of the current block to each destination
  bool over = false;                   // deepep-ll: some (expert, source rank) block over its capacity
  void flush() {
    for (std::size_t e = 0; e < needed32.size(); ++e) needed_expert[e] += needed32[e], needed32[e] = 0;
    pending = 0;
  }
};

// Sources per work item: combine's matrix [destination, source] is then written a cache line (8
// sources) at a time, and never shared between workers.
constexpr std::size_t kBlock = 8;

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

// One source rank's tokens into hist and repeats (and, for consumers planned row by row, their
// jobs). Everything the loop touches is a local pointer, so a store through one cannot make the
// compiler reload the others.
template <bool kDedup, bool kMinusOneToRank0, bool kPlan, bool kContiguous>
void count_source(const StatsInput& in, const RankOf& rank, const SourceRouting& src, Counts& c) {
  const ExpertMap& map = *in.map;
  const int K = in.top_k;
  const std::int32_t* rank_of = rank.table;
  const std::uint64_t m = rank.m;
  const int shift = rank.shift;
  std::uint32_t* hist = c.hist.data();
  std::uint32_t* minus_one = hist + map.num_experts;
  std::uint32_t* repeats = c.repeats.data();
  std::uint32_t* seen = c.seen.data();
  std::uint32_t token = c.token;
  std::int32_t ids[64];
  float wts[64];
  Job planned[64];
  const std::int32_t* row = src.ids.data();
  for (std::int64_t t = 0; t < src.num_tokens; ++t, row += K) {
    // 1 KiB ahead: the counters' scattered stores otherwise stall the stream (5-8%).
    if ((src.num_tokens - t) * K > 256) __builtin_prefetch(row + 256);
    if (++token == 0) {  // the running number wrapped: no stamp may look like this token's
      std::fill(c.seen.begin(), c.seen.end(), 0u);
      token = 1;
    }
    for (int k = 0; k < K; ++k) {
      const std::int32_t id = row[k];
      int d;
      if (id >= 0) {
        ++hist[id];
        if constexpr (kContiguous) d = static_cast<int>((static_cast<std::uint64_t>(id) * m) >> shift);
        else d = rank_of[id];
      } else if (kMinusOneToRank0) {
        ++*minus_one;
        d = 0;
      } else {
        continue;
      }
      const bool first = seen[d] != token;
      seen[d] = token;
      if (!first) ++repeats[d];  // rare under spread routing: a branch beats a store per slot
      if constexpr (kPlan) {
        if (kDedup ? !first : id < 0) continue;  // no row of its own
        const DispatchModel dm = in.dispatch.model;
        const RowDest rd{d, k, kDedup ? -1 : id};
        const std::int32_t* got = row;  // global ids arrive verbatim
        if (id_space(dm) != IdSpace::global) {
          deliver_row(dm, map, K, row, &src.weights[t * K], rd, ids, wts);
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

#if defined(__x86_64__)
// count_source for K <= 8 without planned jobs, on AVX2: a token's destinations are computed in
// one vector and compared with each other in registers, so only a token that sends two slots to
// one destination stamps `seen` (any stamp unique per token serves, so skipped tokens need none).
// Under spread routing over many ranks that is a few percent of tokens: the loop then does per
// slot what the floor does, plus the expert's counter.
template <bool kMinusOneToRank0, bool kContiguous>
__attribute__((target("avx2"))) void count_source_avx2(const StatsInput& in, const RankOf& rank,
                                                       const SourceRouting& src, Counts& c) {
  const int K = in.top_k;
  std::uint32_t* hist = c.hist.data();
  std::uint32_t* minus_one = hist + in.map->num_experts;
  std::uint32_t* repeats = c.repeats.data();
  std::uint32_t* seen = c.seen.data();
  std::uint32_t token = c.token;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(K), lane);  // lanes < K
  const __m256i unique = _mm256_sub_epi32(_mm256_set1_epi32(-2), lane);  // no rank, no other lane's
  const __m256i m = _mm256_set1_epi64x(static_cast<long long>(rank.m));
  const __m128i shift = _mm_cvtsi32_si128(rank.shift);
  const __m256i rot[4] = {_mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0), _mm256_setr_epi32(2, 3, 4, 5, 6, 7, 0, 1),
                          _mm256_setr_epi32(3, 4, 5, 6, 7, 0, 1, 2), _mm256_setr_epi32(4, 5, 6, 7, 0, 1, 2, 3)};
  const std::int32_t* row = src.ids.data();
  for (std::int64_t t = 0; t < src.num_tokens; ++t, row += K) {
    if ((src.num_tokens - t) * K > 256) __builtin_prefetch(row + 256);
    const __m256i ids = _mm256_maskload_epi32(row, live);  // lanes past K read nothing
    const __m256i valid = _mm256_and_si256(live, _mm256_cmpgt_epi32(ids, _mm256_set1_epi32(-1)));
    __m256i d;
    if constexpr (kContiguous) {  // id * m >> shift per lane, as RankOf does
      const __m256i even = _mm256_srl_epi64(_mm256_mul_epu32(ids, m), shift);
      const __m256i odd = _mm256_srl_epi64(_mm256_mul_epu32(_mm256_srli_epi64(ids, 32), m), shift);
      d = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xaa);
    } else {
      d = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), rank.table, ids, valid, 4);
    }
    d = _mm256_blendv_epi8(unique, d, valid);
    if constexpr (kMinusOneToRank0) d = _mm256_blendv_epi8(d, _mm256_setzero_si256(), _mm256_andnot_si256(valid, live));
    __m256i same = _mm256_setzero_si256();
    for (const __m256i& r : rot) same = _mm256_or_si256(same, _mm256_cmpeq_epi32(d, _mm256_permutevar8x32_epi32(d, r)));
    for (int k = 0; k < K; ++k) {
      const std::int32_t id = row[k];
      if (id >= 0) ++hist[id];
      else if (kMinusOneToRank0) ++*minus_one;
    }
    if (_mm256_testz_si256(same, same)) continue;
    if (++token == 0) {  // the running number wrapped: no stamp may look like this token's
      std::fill(c.seen.begin(), c.seen.end(), 0u);
      token = 1;
    }
    alignas(32) std::int32_t dest[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dest), d);
    for (int k = 0; k < K; ++k) {
      if (dest[k] < 0) continue;  // a slot with no destination
      const bool first = seen[dest[k]] != token;
      seen[dest[k]] = token;
      if (!first) ++repeats[dest[k]];
    }
  }
  c.token = token;
}
#endif

// A counted source into `to` [R] (its rows to each destination) and the worker's totals; hist
// and repeats back to zero. Slots per destination = its experts' slots (+ the -1 slots sent to
// rank 0); rows = slots for per-(token, expert) layouts, else slots less repeats, which is also
// the number of distinct source tokens a destination sees.
template <bool kDedup>
void close_source(const ExpertMap& map, std::int64_t num_pairs, std::int64_t per_source_cap, Counts& c,
                  std::uint32_t* to) {
  const int R = map.num_ranks, E = map.num_experts;
  if (c.pending + num_pairs > std::int64_t{UINT32_MAX}) c.flush();
  c.pending += num_pairs;
  const std::uint32_t* hist = c.hist.data();
  std::uint32_t* needed = c.needed32.data();
  std::uint32_t* repeats = c.repeats.data();
  // Plain loops over hist, each one the compiler vectorizes.
  for (int e = 0; e < E; ++e) needed[e] += hist[e];
  if (per_source_cap >= 0) {
    std::uint32_t most = 0;
    for (int e = 0; e < E; ++e) most = std::max(most, hist[e]);
    c.over = c.over || most > per_source_cap;
  }
  if (map.contiguous) {
    const int p = E / R;
    for (int d = 0; d < R; ++d) {
      std::uint32_t slots = 0;
      for (int j = 0; j < p; ++j) slots += hist[d * p + j];
      to[d] = slots;
    }
  } else {
    for (int d = 0; d < R; ++d) {
      std::uint32_t slots = 0;
      for (const std::int32_t e : map.experts_of_rank[d]) slots += hist[e];
      to[d] = slots;
    }
  }
  to[0] += hist[E];
  // Rows = slots for per-(token, expert) layouts; slots less repeats = distinct source tokens.
  for (int d = 0; d < R; ++d) {
    const std::uint32_t distinct = to[d] - repeats[d];
    if (kDedup) to[d] = distinct;
    else c.sources[d] += distinct;
  }
  std::fill(c.hist.begin(), c.hist.end(), 0u);
  std::fill(c.repeats.begin(), c.repeats.end(), 0u);
}

using CountFn = void (*)(const StatsInput&, const RankOf&, const SourceRouting&, Counts&);
template <bool kDedup, bool kMinusOneToRank0, bool kPlan>
CountFn count_fn(bool contiguous) {
  return contiguous ? count_source<kDedup, kMinusOneToRank0, kPlan, true>
                    : count_source<kDedup, kMinusOneToRank0, kPlan, false>;
}
// AVX2 where the CPU has it, unless MOESIM_COUNT_ISA says (cpu_isa.hpp).
bool use_avx2() {
  static const bool avx2 = choose_avx2("MOESIM_COUNT_ISA", false);
  return avx2;
}

template <bool kDedup, bool kMinusOneToRank0>
CountFn count_fn(bool plan, bool contiguous, int top_k) {
#if defined(__x86_64__)
  // Both layouts count the same: kDedup only matters to close_source and to planned jobs.
  if (!plan && top_k <= 8 && use_avx2())
    return contiguous ? count_source_avx2<kMinusOneToRank0, true> : count_source_avx2<kMinusOneToRank0, false>;
#endif
  return plan ? count_fn<kDedup, kMinusOneToRank0, true>(contiguous)
              : count_fn<kDedup, kMinusOneToRank0, false>(contiguous);
}

}  // namespace

std::optional<RoutingStats> routing_stats_counted(const StatsInput& in, const std::vector<SourceRouting>& sources) {
  const auto start = std::chrono::steady_clock::now();
  const ExpertMap& map = *in.map;
  const int R = map.num_ranks, E = map.num_experts;
  const DispatchOptions& o = in.dispatch;
  for (const auto& src : sources)
    if (src.num_tokens * in.top_k > std::int64_t{UINT32_MAX}) return std::nullopt;  // past 32-bit counters
  StatsFrame f = start_stats(in, sources);
  RoutingStats& s = f.stats;
  const bool dedup = rank_dedup(o.model);
  const bool minus_one_to_rank0 = o.model == DispatchModel::mori && o.negative == NegativeIds::rank0;
  const Jobs jobs = jobs_of(o.model, in.consumer.model);
  const auto& rank_of = map.rank_of;
  const std::size_t n = static_cast<std::size_t>(R);
  const std::size_t num_blocks = (n + kBlock - 1) / kBlock;

  std::vector<Counts> counts(static_cast<std::size_t>(workers_for(num_blocks, in.threads)));
  const bool plan = jobs == Jobs::by_rows;
  for (Counts& c : counts) {
    c.hist.assign(E + 1, 0);
    c.repeats.assign(R, 0);
    c.seen.assign(R, 0);
    c.needed_expert.assign(E, 0);
    c.needed32.assign(E, 0);
    c.sources.assign(R, 0);
    c.rows.assign(R, 0);
    c.block.assign(kBlock * n, 0);
    if (plan) c.performed_expert.assign(E, 0), c.performed_rank.assign(R, 0);
  }
  const int K = in.top_k;
  const CountFn count = dedup ? (minus_one_to_rank0 ? count_fn<true, true>(plan, map.contiguous, K)
                                                    : count_fn<true, false>(plan, map.contiguous, K))
                              : count_fn<false, false>(plan, map.contiguous, K);
  const auto close = dedup ? close_source<true> : close_source<false>;
  const std::int64_t per_source_cap = f.per_source && f.cap != INT64_MAX ? f.cap : -1;
  const RankOf rank(map);
  // Each block of sources: counted, then its rows into bytes both ways (dispatch's rows, and
  // combine's [destination, source] a cache line per destination).
  parallel_items(num_blocks, in.threads, [&](std::size_t b, int w) {
    Counts& c = counts[static_cast<std::size_t>(w)];
    const std::size_t r0 = b * kBlock, r1 = std::min(n, r0 + kBlock);
    for (std::size_t r = r0; r < r1; ++r) {
      count(in, rank, sources[r], c);
      close(map, sources[r].num_tokens * in.top_k, per_source_cap, c, &c.block[(r - r0) * n]);
    }
    for (std::size_t r = r0; r < r1; ++r) {
      const std::uint32_t* rows = &c.block[(r - r0) * n];
      std::int64_t* bytes = &s.dispatch_bytes[r * n];
      for (std::size_t d = 0; d < n; ++d) bytes[d] = rows[d] * f.send_row, c.rows[d] += rows[d];
    }
    for (std::size_t d = 0; d < n; ++d)
      for (std::size_t r = r0; r < r1; ++r) s.combine_bytes[d * n + r] = c.block[(r - r0) * n + d] * f.back_row;
  });
  bool over = false;
  for (Counts& c : counts) {
    c.flush();
    add(s.needed_per_expert, c.needed_expert);
    add(s.sources_per_rank, c.sources);
    add(s.rows_per_rank, c.rows);
    if (plan) add(s.performed_per_expert, c.performed_expert), add(s.performed_per_rank, c.performed_rank);
    over = over || c.over;
  }
  for (const auto& src : sources) s.tokens += src.num_tokens;
  for (int e = 0; e < E; ++e) s.needed_per_rank[rank_of[e]] += s.needed_per_expert[e], s.pairs += s.needed_per_expert[e];
  if (dedup) s.sources_per_rank = s.rows_per_rank;
  s.rows_per_expert = s.needed_per_expert;
  if (jobs == Jobs::needed) s.performed_per_expert = s.needed_per_expert, s.performed_per_rank = s.needed_per_rank;
  // A capacity exceeded anywhere: the row pass says which rows arrived in time.
  for (int d = 0; d < R; ++d)
    if (!f.expert_major && s.rows_per_rank[d] > f.cap) return std::nullopt;
  if (f.expert_major && !f.per_source)
    for (int e = 0; e < E; ++e)
      if (s.rows_per_expert[e] > f.cap) return std::nullopt;
  if (over) return std::nullopt;
  finish_stats(in, s, start);
  return std::move(s);
}

}  // namespace moesim::sim
