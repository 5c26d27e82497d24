// The last shrinking step of moesim bisect: fewer experts. The experts the minimal trace still
// routes to are renumbered compactly on their own ranks, and their weights are stored in the
// trace so renumbering does not change them (generated weights are keyed by expert id).
#include <algorithm>
#include <map>
#include <set>

#include "bisect.hpp"
#include "weights.hpp"

namespace moesim::sim {

std::optional<Trace> compact_experts(const Trace& original, std::size_t pos, const Trace& minimal) {
  const TraceConfig& c = minimal.config;
  if (c.placement.kind != PlacementKind::contiguous || original.config.placement.kind != PlacementKind::contiguous)
    return std::nullopt;
  const int R = c.num_ranks, per_rank = c.experts_per_rank();
  std::vector<std::set<int>> used(static_cast<std::size_t>(R));
  for (const auto& rank : minimal.layers[pos].ranks)
    for (const auto id : rank.topk_ids)
      if (id >= 0) used[static_cast<std::size_t>(id / per_rank)].insert(id);
  std::size_t most = 1;
  for (const auto& u : used) most = std::max(most, u.size());
  // top_k may not exceed the expert count.
  const int new_per_rank = std::max(static_cast<int>(most), (c.top_k + R - 1) / R);
  const int E = new_per_rank * R;
  if (E >= c.num_experts) return std::nullopt;

  std::map<int, int> renumber;  // old physical id -> new
  std::vector<int> source(static_cast<std::size_t>(E), -1);  // new id -> old id whose weights it takes
  for (int q = 0; q < R; ++q) {
    int local = 0;
    for (const int id : used[static_cast<std::size_t>(q)]) {
      renumber[id] = q * new_per_rank + local;
      source[static_cast<std::size_t>(q * new_per_rank + local++)] = id;
    }
    // Experts nobody routes to still need weights: any of the rank's will do.
    for (; local < new_per_rank; ++local) source[static_cast<std::size_t>(q * new_per_rank + local)] = q * per_rank;
  }

  Trace out = minimal;
  out.config.num_experts = E;
  out.config.placement = contiguous_placement(E, R);
  for (std::size_t l = 0; l < pos; ++l) out.layers[l].weights.reset();  // no tokens: the generator serves
  for (auto& rank : out.layers[pos].ranks)
    for (auto& id : rank.topk_ids)
      if (id >= 0) id = renumber.at(id);

  const WeightProvider provider(original);
  ExpertWeights w;
  for (const int old : source) {
    const ExpertMatrices m = provider.routed(static_cast<int>(pos), original.config.logical_of(old));
    w.w1.insert(w.w1.end(), m.w1.begin(), m.w1.end());
    w.w2.insert(w.w2.end(), m.w2.begin(), m.w2.end());
    w.b1.insert(w.b1.end(), m.b1.begin(), m.b1.end());
    w.b2.insert(w.b2.end(), m.b2.begin(), m.b2.end());
  }
  for (int s = 0; s < c.num_shared_experts; ++s) {
    const ExpertMatrices m = provider.shared(static_cast<int>(pos), s);
    w.shared_w1.insert(w.shared_w1.end(), m.w1.begin(), m.w1.end());
    w.shared_w2.insert(w.shared_w2.end(), m.w2.begin(), m.w2.end());
    w.shared_b1.insert(w.shared_b1.end(), m.b1.begin(), m.b1.end());
    w.shared_b2.insert(w.shared_b2.end(), m.b2.begin(), m.b2.end());
  }
  if (c.shared_expert_gate) w.shared_gate = provider.shared_gate(static_cast<int>(pos));
  // Biases or a shared gate need stored weights in every layer; the earlier layers have no
  // tokens, so any of the right shape do.
  if (c.expert_bias || c.shared_expert_gate)
    for (std::size_t l = 0; l < pos; ++l) out.layers[l].weights = w;
  out.layers[pos].weights = std::move(w);
  return out;
}

}  // namespace moesim::sim
