#include "expert_map.hpp"

#include <string>

#include "error.hpp"

namespace moesim::sim {

std::string_view name(ReplicaPolicy p) {
  switch (p) {
    case ReplicaPolicy::first: return "first";
    case ReplicaPolicy::round_robin: return "round-robin";
    case ReplicaPolicy::same_rank: return "same-rank";
  }
  return "?";
}

ReplicaPolicy parse_replica_policy(std::string_view s) {
  for (auto p : {ReplicaPolicy::first, ReplicaPolicy::round_robin, ReplicaPolicy::same_rank})
    if (name(p) == s) return p;
  throw Error("unknown replica policy '" + std::string(s) + "' (expected first, round-robin, same-rank)");
}

ExpertMap make_expert_map(const TraceConfig& c) {
  ExpertMap m;
  m.num_ranks = c.num_ranks;
  m.num_experts = c.num_experts;
  m.num_logical = c.placement.num_logical > 0 ? c.placement.num_logical : c.num_experts;
  m.rank_of = c.placement.expert_to_rank;
  m.logical_of = c.placement.physical_to_logical;
  if (static_cast<int>(m.rank_of.size()) != c.num_experts || static_cast<int>(m.logical_of.size()) != c.num_experts)
    throw Error("placement does not cover " + std::to_string(c.num_experts) + " experts");
  m.experts_of_rank.assign(c.num_ranks, {});
  m.replicas_of_logical.assign(m.num_logical, {});
  m.local_of.assign(c.num_experts, 0);
  for (int e = 0; e < c.num_experts; ++e) {
    const int r = m.rank_of[e];
    if (r < 0 || r >= c.num_ranks) throw Error("placement: expert " + std::to_string(e) + " on rank out of range");
    const int l = m.logical_of[e];
    if (l < 0 || l >= m.num_logical) throw Error("placement: expert " + std::to_string(e) + " logical id out of range");
    m.local_of[e] = static_cast<int>(m.experts_of_rank[r].size());
    m.experts_of_rank[r].push_back(e);
    m.replicas_of_logical[l].push_back(e);
  }
  const int per = c.num_experts / c.num_ranks;
  m.contiguous = c.num_experts % c.num_ranks == 0;
  for (int e = 0; e < c.num_experts && m.contiguous; ++e) m.contiguous = m.rank_of[e] == e / per;
  for (int r = 0; r < c.num_ranks; ++r) m.max_local = std::max(m.max_local, m.num_local(r));
  return m;
}

void resolve_logical_ids(const ExpertMap& map, ReplicaPolicy policy, int rank, std::int64_t token_base, int top_k,
                         std::vector<std::int32_t>& ids) {
  const std::int64_t T = static_cast<std::int64_t>(ids.size()) / top_k;
  for (std::int64_t t = 0; t < T; ++t) {
    for (int k = 0; k < top_k; ++k) {
      std::int32_t& id = ids[t * top_k + k];
      if (id < 0) continue;
      if (id >= map.num_logical)
        throw Error("index [" + std::to_string(t) + ", " + std::to_string(k) + "]: logical id " + std::to_string(id) +
                    " out of range (" + std::to_string(map.num_logical) + " logical experts)");
      const auto& reps = map.replicas_of_logical[id];
      if (reps.empty())
        throw Error("logical expert " + std::to_string(id) + " has no physical replica in the placement");
      const auto rr = reps[static_cast<std::size_t>((token_base + t) % static_cast<std::int64_t>(reps.size()))];
      switch (policy) {
        case ReplicaPolicy::first: id = reps.front(); break;
        case ReplicaPolicy::round_robin: id = rr; break;
        case ReplicaPolicy::same_rank: {
          id = rr;
          for (auto p : reps)
            if (map.rank_of[p] == rank) {
              id = p;
              break;
            }
          break;
        }
      }
    }
  }
}

}  // namespace moesim::sim
