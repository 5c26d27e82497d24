#include "pairing.hpp"

#include "error.hpp"

namespace moesim::sim {

std::string_view name(CombineModel m) {
  switch (m) {
    case CombineModel::rank_sum: return "rank-sum";
    case CombineModel::weighted: return "weighted";
    case CombineModel::internode_v1: return "internode-v1";
    case CombineModel::pair_sum: return "pair-sum";
  }
  return "?";
}

CombineModel parse_combine(std::string_view s) {
  for (auto m : {CombineModel::rank_sum, CombineModel::weighted, CombineModel::internode_v1, CombineModel::pair_sum})
    if (name(m) == s) return m;
  throw Error("unknown combine model '" + std::string(s) + "' (expected rank-sum, weighted, internode-v1, pair-sum)");
}

std::string_view name(RankOrder o) {
  switch (o) {
    case RankOrder::first_slot: return "first-slot";
    case RankOrder::ascending_rank: return "ascending-rank";
    case RankOrder::last_slot: return "last-slot";
  }
  return "?";
}

std::string_view name(DeepepVersion v) { return v == DeepepVersion::v2 ? "v2" : "v1"; }

DeepepVersion parse_deepep_version(std::string_view s) {
  for (auto v : {DeepepVersion::v1, DeepepVersion::v2})
    if (name(v) == s) return v;
  throw Error("unknown deepep version '" + std::string(s) + "' (expected v1, v2)");
}

DeepepVersion default_deepep_version(const Trace& trace) {
  const auto& settings = trace.config.library_settings;
  const auto it = settings.find("deepep_version");
  if (it == settings.end()) return DeepepVersion::v1;
  try {
    return parse_deepep_version(it->second);
  } catch (const Error& e) {
    throw Error(where(trace.path, "/config/library_settings") + e.what());
  }
}

RankOrder rank_order(DispatchModel d, DeepepVersion v) {
  if (d != DispatchModel::deepep_ht) return RankOrder::first_slot;
  return v == DeepepVersion::v2 ? RankOrder::last_slot : RankOrder::ascending_rank;
}

DispatchModel default_dispatch(const TraceConfig& c) {
  if (c.library == "pplx") return DispatchModel::pplx;
  if (c.library == "deepep" || c.library == "deepep-ht") return DispatchModel::deepep_ht;
  if (c.library == "deepep-ll") return DispatchModel::deepep_ll;
  return DispatchModel::mori;
}

ConsumerModel default_consumer(DispatchModel m) {
  switch (m) {
    case DispatchModel::mori: return ConsumerModel::aiter_mask;
    case DispatchModel::deepep_ht: return ConsumerModel::deepep_local;
    case DispatchModel::deepep_ll:
    case DispatchModel::pplx: return ConsumerModel::per_expert;
    case DispatchModel::pairs: return ConsumerModel::target_expert;
  }
  return ConsumerModel::aiter_mask;
}

CombineModel default_combine(DispatchModel m, const std::string& kernel_type) {
  switch (m) {
    case DispatchModel::mori: return kernel_type == "InterNodeV1" ? CombineModel::internode_v1 : CombineModel::rank_sum;
    case DispatchModel::deepep_ht: return CombineModel::rank_sum;
    case DispatchModel::deepep_ll:
    case DispatchModel::pplx: return CombineModel::weighted;
    case DispatchModel::pairs: return CombineModel::pair_sum;
  }
  return CombineModel::rank_sum;
}

namespace {
bool consumer_weighted(ConsumerModel c) { return c != ConsumerModel::per_expert && c != ConsumerModel::identity; }
}  // namespace

PairingVerdict judge_pairing(DispatchModel d, const ConsumerOptions& co, CombineModel k) {
  PairingVerdict v;
  const ConsumerModel c = co.model;
  const bool rank_rows = rank_dedup(d);
  const bool rank_combine = k == CombineModel::rank_sum || k == CombineModel::internode_v1;
  switch (d) {
    case DispatchModel::mori:
      v.correct = (c == ConsumerModel::aiter_mask || c == ConsumerModel::dedup_filter) && rank_combine;
      v.correct_pairings = "mori + aiter-mask (or dedup-filter) + rank-sum (internode-v1 for InterNodeV1)";
      break;
    case DispatchModel::deepep_ht:
      v.correct = c == ConsumerModel::deepep_local && k == CombineModel::rank_sum;
      v.correct_pairings = "deepep-ht + deepep-local + rank-sum";
      break;
    case DispatchModel::deepep_ll:
    case DispatchModel::pplx:
      v.correct = c == ConsumerModel::per_expert && k == CombineModel::weighted;
      v.correct_pairings = std::string(name(d)) + " + per-expert + weighted";
      break;
    case DispatchModel::pairs:
      v.correct = (c == ConsumerModel::target_expert && k == CombineModel::pair_sum) ||
                  (c == ConsumerModel::dedup_filter && rank_combine);
      v.correct_pairings = "pairs + target-expert + pair-sum, or pairs + dedup-filter + rank-sum";
      break;
  }
  if (co.whole_buffer && reads_stale_rows(co, d)) {
    v.correct = false;
    v.reasons.push_back("--whole-buffer reads rows past total_recv (AITER num_local_tokens not passed): stale rows "
                        "cost computations, and whatever they hold is computed");
  }
  if (v.correct) return v;
  if (c == ConsumerModel::identity) {
    v.reasons.push_back("identity experts return their input: a check of dispatch and combine as MORI's and DeepEP's "
                        "tests make it, not the layer's output (run prints that check)");
    return v;
  }
  if (c == ConsumerModel::all_k)
    v.reasons.push_back(std::string("all-k computes every id of each row's top-k (K per row) although a row stands "
                                    "for one ") + (rank_rows ? "destination rank" : "expert") +
                        "; non-local ids " + (co.non_local == NonLocal::mask ? "are masked" : "are remapped (" +
                        std::string(name(co.non_local)) + ") onto local experts and compute the wrong experts"));
  if (id_space(d) == IdSpace::local && (c == ConsumerModel::aiter_mask || c == ConsumerModel::dedup_filter))
    v.reasons.push_back(std::string(name(c)) + " reads deepep-ht's local ids as global ids");
  if (id_space(d) == IdSpace::global && c == ConsumerModel::deepep_local)
    v.reasons.push_back("deepep-local reads global ids as local: only ids below E_local count, as the wrong experts");
  if (rank_rows && (c == ConsumerModel::per_expert || c == ConsumerModel::target_expert))
    v.reasons.push_back(std::string(name(d)) + " rows stand for a rank, not an expert: " + std::string(name(c)) +
                        " has no target and computes nothing");
  if (!rank_rows && c == ConsumerModel::aiter_mask)
    v.reasons.push_back("aiter-mask on per-(token, expert) rows computes every local expert of a token once per row "
                        "it got: a token with m local experts is computed m times");
  if (k == CombineModel::weighted && consumer_weighted(c))
    v.reasons.push_back("router weights applied twice: by the consumer and by the weighted combine");
  if (k != CombineModel::weighted && !consumer_weighted(c))
    v.reasons.push_back("router weights never applied: per-expert returns unweighted rows and " +
                        std::string(name(k)) + " does not weight");
  if (!rank_rows && rank_combine && c != ConsumerModel::dedup_filter)
    v.reasons.push_back(std::string(name(k)) + " keeps one row per destination rank and drops the token's other "
                        "experts on that rank");
  if (rank_rows && k == CombineModel::pair_sum)
    v.reasons.push_back("pair-sum adds a rank's row once per slot it holds");
  if (!rank_rows && c == ConsumerModel::dedup_filter && k == CombineModel::pair_sum)
    v.reasons.push_back("dedup-filter gives every copy of a token the full local result; pair-sum adds each copy");
  if (v.reasons.empty()) v.reasons.push_back("not a pairing a correct integration uses");
  return v;
}

}  // namespace moesim::sim
