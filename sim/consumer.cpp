#include "consumer.hpp"

#include <string>

#include "error.hpp"

namespace moesim::sim {

namespace {
constexpr ConsumerModel kConsumers[] = {ConsumerModel::aiter_mask, ConsumerModel::deepep_local,
                                        ConsumerModel::per_expert, ConsumerModel::all_k,
                                        ConsumerModel::dedup_filter, ConsumerModel::target_expert,
                                        ConsumerModel::identity};
}

std::string_view name(ConsumerModel m) {
  switch (m) {
    case ConsumerModel::aiter_mask: return "aiter-mask";
    case ConsumerModel::deepep_local: return "deepep-local";
    case ConsumerModel::per_expert: return "per-expert";
    case ConsumerModel::all_k: return "all-k";
    case ConsumerModel::dedup_filter: return "dedup-filter";
    case ConsumerModel::target_expert: return "target-expert";
    case ConsumerModel::identity: return "identity";
  }
  return "?";
}

ConsumerModel parse_consumer(std::string_view s) {
  for (auto m : kConsumers)
    if (name(m) == s) return m;
  throw Error("unknown consumer model '" + std::string(s) +
              "' (expected aiter-mask, deepep-local, per-expert, all-k, dedup-filter, target-expert, identity)");
}

std::string_view name(NonLocal n) {
  switch (n) {
    case NonLocal::wrap: return "wrap";
    case NonLocal::clamp: return "clamp";
    case NonLocal::mask: return "mask";
  }
  return "?";
}

NonLocal parse_non_local(std::string_view s) {
  for (auto n : {NonLocal::wrap, NonLocal::clamp, NonLocal::mask})
    if (name(n) == s) return n;
  throw Error("unknown non-local treatment '" + std::string(s) + "' (expected wrap, clamp, mask)");
}

bool reads_stale_rows(const ConsumerOptions& o, DispatchModel m) {
  return o.whole_buffer && !expert_major(m) &&
         (o.model == ConsumerModel::aiter_mask || o.model == ConsumerModel::all_k);
}

int plan_row(const ConsumerOptions& o, const ExpertMap& map, int dest, int K, const std::int32_t* ids, int target,
             int slot, bool first_of_source, Job* out) {
  int n = 0;
  const int E = map.num_experts;
  const int E_local = map.num_local(dest);
  switch (o.model) {
    case ConsumerModel::aiter_mask:
      for (int k = 0; k < K; ++k)
        if (ids[k] >= 0 && ids[k] < E && map.rank_of[ids[k]] == dest) out[n++] = {k, ids[k], true};
      break;
    case ConsumerModel::deepep_local:
      for (int k = 0; k < K; ++k)
        if (ids[k] >= 0 && ids[k] < E_local) out[n++] = {k, map.global_of(dest, ids[k]), true};
      break;
    case ConsumerModel::per_expert:
      if (target >= 0) out[n++] = {slot, target, false};
      break;
    case ConsumerModel::all_k: {
      if (E_local == 0) break;
      const int offset = dest * (E / map.num_ranks);
      for (int k = 0; k < K; ++k) {
        if (ids[k] < 0) continue;
        int local = ids[k] - offset;
        if (local < 0 || local >= E_local) {
          if (o.non_local == NonLocal::mask) continue;
          local = o.non_local == NonLocal::wrap ? ((local % E_local) + E_local) % E_local
                                                : (local < 0 ? 0 : E_local - 1);
        }
        out[n++] = {k, map.global_of(dest, local), true};
      }
      break;
    }
    case ConsumerModel::dedup_filter:
      if (!first_of_source) break;
      for (int k = 0; k < K; ++k)
        if (ids[k] >= 0 && ids[k] < E && map.rank_of[ids[k]] == dest) out[n++] = {k, ids[k], true};
      break;
    case ConsumerModel::target_expert:
      if (target >= 0) out[n++] = {slot, target, true};
      break;
    case ConsumerModel::identity: break;  // returns its input, computes nothing
  }
  return n;
}

}  // namespace moesim::sim
