#pragma once
// What both routing-statistics passes share (stats.cpp): the zeroed statistics with every
// receive buffer's size and capacity, the bytes of one row each way, and the ending (rows read
// past total_recv, exact-sized buffers, the wall time).
#include <chrono>
#include <cstdint>
#include <vector>

#include "stats.hpp"

namespace moesim::sim {

struct StatsFrame {
  RoutingStats stats;
  std::int64_t cap = 0;      // rows per receive block: a destination (flat), one of its experts
                             // (expert-major), or one (expert, source rank) when per_source
  bool expert_major = false;
  bool per_source = false;   // deepep-ll
  std::int64_t send_row = 0, back_row = 0;  // bytes of one row: dispatched, and returned by combine
};

StatsFrame start_stats(const StatsInput& in, const std::vector<SourceRouting>& sources);
void finish_stats(const StatsInput& in, RoutingStats& s, std::chrono::steady_clock::time_point start);

}  // namespace moesim::sim
