#pragma once
// Where each physical expert lives, resolved once per run from the trace's placement, and how
// trace ids become the physical ids dispatch sees. Traces store physical ids by default; with
// an EPLB placement a trace may instead hold logical ids (what the router emits before EPLB
// picks a replica), and a replica-choice policy turns them into physical ids.
#include <cstdint>
#include <string_view>
#include <vector>

#include "trace.hpp"

namespace moesim::sim {

// How a logical id picks one of its physical replicas (EPLB).
//   first:      the lowest physical id holding the expert.
//   round-robin: replica (global token index) mod (number of replicas), spreading load the
//               way vLLM's EPLB rotation does.
//   same-rank:  a replica on the token's own rank when there is one, else round-robin.
enum class ReplicaPolicy { first, round_robin, same_rank };
std::string_view name(ReplicaPolicy p);
ReplicaPolicy parse_replica_policy(std::string_view s);

struct ExpertMap {
  int num_ranks = 0;
  int num_experts = 0;  // physical
  int num_logical = 0;
  std::vector<std::int32_t> rank_of;     // [E] physical -> rank
  std::vector<std::int32_t> local_of;    // [E] physical -> index among its rank's experts
  std::vector<std::int32_t> logical_of;  // [E] physical -> logical (weights)
  std::vector<std::vector<std::int32_t>> experts_of_rank;     // [R] physical ids, ascending
  std::vector<std::vector<std::int32_t>> replicas_of_logical;  // [L] physical ids, ascending
  bool contiguous = true;  // rank r holds [r*E_local, (r+1)*E_local)
  int max_local = 0;       // the largest number of experts on one rank

  int num_local(int rank) const { return static_cast<int>(experts_of_rank[rank].size()); }
  // Global id of local expert j on `rank` (inverse of local_of).
  int global_of(int rank, int local) const { return experts_of_rank[rank][local]; }
};

ExpertMap make_expert_map(const TraceConfig& config);

// Rewrites logical ids [T, K] of rank `rank` into physical ids in place; -1 stays -1.
// `token_base` is the global index of the rank's first token (round-robin's counter).
void resolve_logical_ids(const ExpertMap& map, ReplicaPolicy policy, int rank, std::int64_t token_base,
                         int top_k, std::vector<std::int32_t>& ids);

}  // namespace moesim::sim
