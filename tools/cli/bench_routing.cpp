// moesim bench routing: the simulator's routing-only statistics (what `moesim run --routing-only`
// computes) on R ranks x T tokens x top-K, uniform routing over E = 8 R experts, beside a floor
// pass that only reads every id and looks up its rank, and a plain vectorized baseline of the
// same per-(token, rank) counting, all measured in the same run: the counting pass on one thread
// and on every core, and the row pass it replaces.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "bench.hpp"
#include "command.hpp"
#include "error.hpp"
#include "random.hpp"
#include "stats.hpp"

namespace moesim::cli {

namespace {
// Uniform without replacement by rejection: K << E, so a redraw is rare.
std::vector<sim::SourceRouting> uniform_routing(int R, int E, int K, std::int64_t T) {
  std::vector<sim::SourceRouting> src(R);
  for (int r = 0; r < R; ++r) {
    src[r].num_tokens = T;
    src[r].ids.resize(T * K);
    src[r].weights.assign(T * K, 1.0f / K);
    const auto stream = stream_of(5, {static_cast<std::uint64_t>(r)});
    std::uint64_t n = 0;
    for (std::int64_t t = 0; t < T; ++t)
      for (int k = 0; k < K; ++k) {
        int id;
        bool dup;
        do {
          id = static_cast<int>(uniform01(stream, n++) * E);
          dup = false;
          for (int j = 0; j < k; ++j) dup = dup || src[r].ids[t * K + j] == id;
        } while (dup);
        src[r].ids[t * K + k] = id;
      }
  }
  return src;
}
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The counting as array passes, one operation over the whole [T, K] array at a time, the way a
// numpy implementation runs it: destinations = where(ids >= 0, rank_of[ids], -1), each row
// sorted, a first-of-run mask, then bincounts of the first destinations (rows and sources per
// rank, and this source's row of the dispatch matrix) and of the valid ids (pairs per expert).
struct Baseline {
  std::vector<std::int64_t> rows_per_rank, needed_per_expert, dispatch_rows;
};
Baseline array_passes(const sim::ExpertMap& map, int K, const std::vector<sim::SourceRouting>& src) {
  const int R = map.num_ranks;
  Baseline b;
  b.rows_per_rank.assign(R, 0);
  b.needed_per_expert.assign(map.num_experts, 0);
  b.dispatch_rows.assign(static_cast<std::size_t>(R) * R, 0);
  std::vector<std::int32_t> dest;
  std::vector<unsigned char> first;
  for (int r = 0; r < R; ++r) {
    const auto& ids = src[r].ids;
    const std::size_t n = ids.size();
    dest.resize(n);
    first.resize(n);
    for (std::size_t i = 0; i < n; ++i) dest[i] = ids[i] >= 0 ? map.rank_of[ids[i]] : -1;
    for (std::size_t i = 0; i < n; i += K) std::sort(&dest[i], &dest[i] + K);
    for (std::size_t i = 0; i < n; ++i) first[i] = dest[i] >= 0 && (i % K == 0 || dest[i] != dest[i - 1]);
    for (std::size_t i = 0; i < n; ++i) b.rows_per_rank[dest[i] < 0 ? 0 : dest[i]] += first[i];
    for (std::size_t i = 0; i < n; ++i) b.dispatch_rows[static_cast<std::size_t>(r) * R + (dest[i] < 0 ? 0 : dest[i])] += first[i];
    for (std::size_t i = 0; i < n; ++i)
      if (ids[i] >= 0) ++b.needed_per_expert[ids[i]];
  }
  return b;
}

}  // namespace

int bench_routing(const po::variables_map& vm) {
  const int R = vm["ranks"].as<int>(), K = vm["top-k"].as<int>();
  const std::int64_t T = vm["rank-tokens"].as<int>();
  if (R < 1 || K < 1 || T < 1 || K > 64) throw UsageError("--ranks, --rank-tokens and --top-k must be positive (top-k <= 64)");
  const int E = 8 * R;
  TraceConfig c;
  c.num_ranks = R;
  c.num_experts = E;
  c.top_k = K;
  c.placement = contiguous_placement(E, R);
  const sim::ExpertMap map = sim::make_expert_map(c);
  const auto src = uniform_routing(R, E, K, T);
  const double pairs = static_cast<double>(R) * static_cast<double>(T) * K;

  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto t0 = std::chrono::steady_clock::now();
  std::int64_t checksum = 0;
  for (const auto& s : src)
    for (auto id : s.ids) checksum += map.rank_of[id];
  const double floor_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  const Baseline base = array_passes(map, K, src);
  const double base_s = seconds_since(t0);
  std::printf("routing-only statistics: R=%d, E=%d, top-%d, %lld tokens per rank, %.0f (token, expert) pairs\n", R, E,
              K, static_cast<long long>(T), pairs);
  std::printf("  %-44s %8.3f s %8.1f M pairs/s  (checksum %lld)\n", "floor: read ids, look up rank (1 thread)", floor_s,
              pairs / floor_s / 1e6, static_cast<long long>(checksum));
  std::printf("  %-44s %8.3f s %8.1f M pairs/s  %.3f of the floor's speed\n",
              "baseline: numpy-style array passes (1 thread)", base_s, pairs / base_s / 1e6, floor_s / base_s);
  std::printf("  counting pass: its speed as a fraction of the floor's, and its speedup over the baseline and the row pass\n");
  struct Case {
    sim::DispatchModel d;
    sim::ConsumerModel c;
  };
  for (const Case& cs : {Case{sim::DispatchModel::mori, sim::ConsumerModel::aiter_mask},
                         Case{sim::DispatchModel::deepep_ht, sim::ConsumerModel::deepep_local},
                         Case{sim::DispatchModel::deepep_ll, sim::ConsumerModel::per_expert},
                         Case{sim::DispatchModel::pairs, sim::ConsumerModel::all_k}}) {
    sim::StatsInput in;
    in.map = &map;
    in.top_k = K;
    in.hidden = 7168;
    in.dispatch.model = cs.d;
    in.consumer.model = cs.c;
    const auto one = sim::routing_stats_counted(in, src);
    in.threads = cores;
    const auto all = sim::routing_stats_counted(in, src);
    const sim::RoutingStats rows = sim::routing_stats_by_rows(in, src);
    if (!one || !all || all->pairs != static_cast<std::int64_t>(pairs) || rows.pairs != all->pairs ||
        all->performed_per_expert != rows.performed_per_expert || all->rows_per_rank != rows.rows_per_rank)
      throw Error("routing statistics: the counting pass and the row pass disagree");
    if (cs.d == sim::DispatchModel::mori &&
        (base.rows_per_rank != all->rows_per_rank || base.needed_per_expert != all->needed_per_expert))
      throw Error("routing statistics: the baseline counted differently");
    const std::string label = std::string(name(cs.d)) + " + " + std::string(name(cs.c));
    std::printf("  %-26s 1 thread %7.3f s (%.2f, %5.1fx, %5.1fx); %d threads %7.3f s (%.2f, %5.1fx, %5.1fx); row pass %6.3f s; rows %lld, waste %.2f\n",
                label.c_str(), one->seconds, floor_s / one->seconds, base_s / one->seconds, rows.seconds / one->seconds,
                cores, all->seconds, floor_s / all->seconds, base_s / all->seconds, rows.seconds / all->seconds,
                rows.seconds, static_cast<long long>(all->total_rows()), all->waste());
  }
  return 0;
}

}  // namespace moesim::cli
