// Benchmark, not a test (skipped unless run with --no-skip, never asserts on time): routing-only
// statistics at R=1024, 4096 tokens per rank, top-8, E=8192, printed as pairs per second next to
// a floor pass that only reads every id once, measured side by side in one run.
//   build-sim/tests/test_sim_routing_bench --no-skip
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>

#include "random.hpp"
#include "stats.hpp"

using namespace moesim;
using namespace moesim::sim;

TEST_CASE("routing-only throughput at R=1024 x 4096 tokens x top-8" * doctest::skip()) {
  const int R = 1024, E = 8192, K = 8;
  const std::int64_t T = 4096;
  TraceConfig c;
  c.num_ranks = R;
  c.num_experts = E;
  c.top_k = K;
  c.placement = contiguous_placement(E, R);
  const ExpertMap map = make_expert_map(c);
  std::vector<SourceRouting> src(R);
  for (int r = 0; r < R; ++r) {  // uniform without replacement by rejection (K << E)
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
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t floor_sum = 0;
  for (const auto& s : src)
    for (auto id : s.ids) floor_sum += map.rank_of[id];
  const double floor_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double pairs = static_cast<double>(R) * T * K;
  std::printf("R=%d E=%d K=%d tokens/rank=%lld: %.0f pairs; floor pass (read every id, look up its rank) %.3f s, "
              "%.1f M pairs/s (checksum %lld)\n",
              R, E, K, static_cast<long long>(T), pairs, floor_s, pairs / floor_s / 1e6, static_cast<long long>(floor_sum));
  struct Case {
    DispatchModel d;
    ConsumerModel c;
  };
  for (const Case& cs : {Case{DispatchModel::mori, ConsumerModel::aiter_mask},
                         Case{DispatchModel::deepep_ht, ConsumerModel::deepep_local},
                         Case{DispatchModel::deepep_ll, ConsumerModel::per_expert},
                         Case{DispatchModel::pairs, ConsumerModel::all_k}}) {
    StatsInput in;
    in.map = &map;
    in.top_k = K;
    in.hidden = 7168;
    in.dispatch.model = cs.d;
    in.consumer.model = cs.c;
    const RoutingStats s = routing_stats(in, src);
    std::printf("  %-9s + %-12s %.3f s, %.1f M pairs/s, %.2fx the floor's time; rows %lld, waste %.2f\n",
                std::string(name(cs.d)).c_str(), std::string(name(cs.c)).c_str(), s.seconds,
                pairs / s.seconds / 1e6, s.seconds / floor_s, static_cast<long long>(s.total_rows()), s.waste());
    CHECK(s.pairs == static_cast<std::int64_t>(pairs));
  }
}
