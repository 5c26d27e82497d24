#pragma once
// Combine models, and which dispatch x consumer x combine pairings a real, correct integration
// uses. Any pairing runs (mismatched pairings are how real bugs are reproduced); the others are
// flagged with the reason they go wrong.
#include <string>
#include <string_view>
#include <vector>

#include "consumer.hpp"
#include "dispatch.hpp"
#include "trace.hpp"

namespace moesim::sim {

// rank-sum:     unweighted sum of one returned row per unique destination rank, in the order of
//               the library's RankOrder below (MORI IntraNode combine, DeepEP HT combine).
// weighted:     sum of w_k * y_k over slots in top-k order, -1 skipped (DeepEP LL, pplx).
// internode-v1: MORI InterNodeV1: rank-sum within each node (gpus_per_node ranks), rounded to the
//               output dtype, then the node partials summed in node order.
// pair-sum:     unweighted sum of the row of every slot in top-k order: what the seed's option B
//               needs after its weighted per-(token, expert) rows (no library here provides it).
enum class CombineModel { rank_sum, weighted, internode_v1, pair_sum };
std::string_view name(CombineModel m);
CombineModel parse_combine(std::string_view s);

// The order in which rank-sum adds a token's per-rank rows (fp32 or float64 accumulator from 0,
// rounded once), a library fact that changes bits:
//   first-slot:     each destination rank at its first top-k slot (MORI IntraNode combine,
//                   src/ops/dispatch_combine/intranode.hpp; the seed's option A);
//   ascending-rank: rank 0 .. R-1 (DeepEP V1 intranode combine kernel, csrc/kernels intranode.cu:
//                   the receiver walks the ranks holding the token in rank order);
//   last-slot:      each rank at its last top-k slot (DeepEP V2, deep_ep/utils/refs.py: a rank's
//                   partial sits at its rightmost slot, then the slots are summed in order).
enum class RankOrder { first_slot, ascending_rank, last_slot };
std::string_view name(RankOrder o);
// DeepEP's normal-mode API: v1 (the legacy Buffer's kernels) or v2 (ElasticBuffer, 2026-04 on).
enum class DeepepVersion { v1, v2 };
std::string_view name(DeepepVersion v);
DeepepVersion parse_deepep_version(std::string_view s);
// The trace's /config/library_settings `deepep_version` when recorded, else v1; a value other
// than v1 or v2 is an Error naming the file and group.
DeepepVersion default_deepep_version(const Trace& trace);
// What rank-sum follows after dispatch `d`: DeepEP HT by version, every other layout first-slot.
RankOrder rank_order(DispatchModel d, DeepepVersion v);

// What a correct integration of `m` runs; kernel_type picks MORI's combine (InterNodeV1 or not).
// The dispatch model of the library a capture came from (TraceConfig::library); mori when unset.
DispatchModel default_dispatch(const TraceConfig& config);
ConsumerModel default_consumer(DispatchModel m);
CombineModel default_combine(DispatchModel m, const std::string& mori_kernel_type);

struct PairingVerdict {
  bool correct = false;
  std::vector<std::string> reasons;  // why a flagged pairing goes wrong, one line each
  std::string correct_pairings;      // what a correct integration of this dispatch uses
};
PairingVerdict judge_pairing(DispatchModel d, const ConsumerOptions& c, CombineModel k);

}  // namespace moesim::sim
