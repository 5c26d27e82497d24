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

// rank-sum:     unweighted sum of one returned row per unique destination rank, in top-k slot
//               order of each rank's first slot (MORI IntraNode combine, DeepEP HT combine).
// weighted:     sum of w_k * y_k over slots in top-k order, -1 skipped (DeepEP LL, pplx).
// internode-v1: MORI InterNodeV1: rank-sum within each node (gpus_per_node ranks), rounded to the
//               output dtype, then the node partials summed in node order.
// pair-sum:     unweighted sum of the row of every slot in top-k order: what the seed's option B
//               needs after its weighted per-(token, expert) rows (no library here provides it).
enum class CombineModel { rank_sum, weighted, internode_v1, pair_sum };
std::string_view name(CombineModel m);
CombineModel parse_combine(std::string_view s);

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
