#pragma once
// Routing statistics of a dispatch x consumer pairing, computed from the routing alone (no
// tensors), so --routing-only handles R=1024 x 4096 tokens x top-8 in a fraction of a second and
// a full run reports exactly the same numbers. Rows arrive in canonical order (source rank,
// token, slot) unless the dispatch that was run says which rows it kept.
#include <cstdint>
#include <optional>
#include <vector>

#include "consumer.hpp"
#include "dispatch.hpp"
#include "expert_map.hpp"

namespace moesim::sim {

struct RoutingStats {
  int num_ranks = 0;
  int num_experts = 0;
  std::int64_t tokens = 0;  // source tokens over all ranks
  std::int64_t pairs = 0;   // valid (token, slot) pairs: the expert computations a correct run needs
  std::vector<std::int64_t> rows_per_rank;      // [R] rows received (after overflow)
  std::vector<std::int64_t> sources_per_rank;   // [R] distinct source tokens among them
  std::vector<std::int64_t> overflow_per_rank;  // [R] rows that arrived past capacity (dropped)
  std::vector<std::int64_t> stale_rows_per_rank;  // [R] rows past total_recv the consumer read
  std::vector<std::int64_t> buffer_rows_per_rank; // [R] full receive buffer
  std::vector<std::int64_t> needed_per_rank;     // [R] (token, slot) pairs whose expert lives here
  std::vector<std::int64_t> performed_per_rank;  // [R] expert computations the consumer ran
  std::vector<std::int64_t> rows_per_expert;     // [E] received (token, expert) pairs per expert
  std::vector<std::int64_t> needed_per_expert;   // [E]
  std::vector<std::int64_t> performed_per_expert;  // [E]
  std::vector<std::int64_t> dispatch_bytes;  // [R, R] source -> destination, token dtype (+ fp8 scales)
  std::vector<std::int64_t> combine_bytes;   // [R, R] destination -> source, rows returned at the token dtype
  double seconds = 0;                        // wall time of the pass (for pairs per second only)

  std::int64_t total_rows() const;
  std::int64_t total_sources() const;
  std::int64_t total_needed() const;
  std::int64_t total_performed() const;
  std::int64_t total_overflow() const;
  double duplication() const;  // rows / distinct (rank, source token)
  double waste() const;        // performed / needed
  static double imbalance(const std::vector<std::int64_t>& v);  // max / mean (1 when all zero)
};

struct StatsInput {
  const ExpertMap* map = nullptr;
  int top_k = 0;
  int hidden = 0;
  DType token_dtype = DType::bf16;
  int scale_block = 128;
  DispatchOptions dispatch;
  ConsumerOptions consumer;
  std::int64_t max_tokens = 0;  // 0: the largest source token count
  int threads = 1;              // for the counting pass (the statistics do not depend on it)
};

// With `dispatched`, which rows survived a receive overflow is read from it (its arrival order,
// shuffled or not); without it, rows arrive in canonical order against the capacities. Takes the
// counting pass where it applies (no dispatch given, no capacity exceeded), else the row pass.
RoutingStats routing_stats(const StatsInput& in, const std::vector<SourceRouting>& sources,
                           const Dispatch* dispatched = nullptr);

// The row pass: every row through the dispatch's routing rule (route.hpp) and the consumer's
// plan (consumer.hpp), one at a time, as the full simulation routes them.
RoutingStats routing_stats_by_rows(const StatsInput& in, const std::vector<SourceRouting>& sources,
                                   const Dispatch* dispatched = nullptr);

// The counting pass (stats_count.cpp): one pass over the ids, threads over source ranks, each
// with its own counters, summed in a fixed order. nullopt where a destination receives more rows
// than its capacity: which rows drop (or whether it is an error) is the row pass's to say.
std::optional<RoutingStats> routing_stats_counted(const StatsInput& in, const std::vector<SourceRouting>& sources);

}  // namespace moesim::sim
