// moesim bench routing: the simulator's routing-only statistics (what `moesim run --routing-only`
// computes) on R ranks x T tokens x top-K, uniform routing over E = 8 R experts, beside a floor
// pass that only reads every id and looks up its rank, measured in the same run.
#include <chrono>
#include <cstdio>

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

  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t checksum = 0;
  for (const auto& s : src)
    for (auto id : s.ids) checksum += map.rank_of[id];
  const double floor_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("routing-only statistics: R=%d, E=%d, top-%d, %lld tokens per rank, %.0f (token, expert) pairs\n", R, E,
              K, static_cast<long long>(T), pairs);
  std::printf("  %-26s %8.3f s %9.1f M pairs/s  (checksum %lld)\n", "floor: read ids, look up rank", floor_s,
              pairs / floor_s / 1e6, static_cast<long long>(checksum));
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
    const sim::RoutingStats s = sim::routing_stats(in, src);
    if (s.pairs != static_cast<std::int64_t>(pairs)) throw Error("routing statistics counted the wrong number of pairs");
    const std::string label = std::string(name(cs.d)) + " + " + std::string(name(cs.c));
    std::printf("  %-26s %8.3f s %9.1f M pairs/s  %6.2fx the floor's time; rows %lld, waste %.2f\n", label.c_str(),
                s.seconds, pairs / s.seconds / 1e6, s.seconds / floor_s, static_cast<long long>(s.total_rows()),
                s.waste());
  }
  return 0;
}

}  // namespace moesim::cli
