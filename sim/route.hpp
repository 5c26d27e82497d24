#pragma once
// The routing rule of each dispatch model for one token: which destination ranks get a row,
// for which slot, and what ids and weights that row carries. Shared by the full dispatch and
// the routing-only statistics so both count exactly the same rows.
#include <cstdint>

#include "dispatch.hpp"

namespace moesim::sim {

struct RowDest {
  int dest = 0;
  int slot = 0;
  int target = -1;  // physical expert the row is for; -1 for rank-dedup rows
};

// Rows of one token, in slot order (the canonical order). out holds at least K entries.
//  mori (ROCm/mori src/ops/dispatch_combine/intranode.hpp): destPe = id / E_local, one row per
//    destination rank at its first slot; -1 skipped, or sent to rank 0 by the pre-mid-2026
//    truncation of -1 / E_local.
//  deepep-ht (deepseek-ai/DeepEP csrc/kernels/intranode.cu, is_token_in_rank): one row per
//    destination rank; -1 skipped.
//  deepep-ll, pplx, pairs (DeepEP internode_ll.cu, pplx-kernels all_to_all): one row per
//    (token, expert); -1 skipped.
inline int route_token(const ExpertMap& map, const DispatchOptions& o, int K, const std::int32_t* ids, RowDest* out) {
  int n = 0;
  if (rank_dedup(o.model)) {
    for (int k = 0; k < K; ++k) {
      int dest;
      if (ids[k] < 0) {
        if (o.model != DispatchModel::mori || o.negative != NegativeIds::rank0) continue;
        dest = 0;
      } else {
        dest = map.rank_of[ids[k]];
      }
      bool seen = false;
      for (int j = 0; j < n && !seen; ++j) seen = out[j].dest == dest;
      if (!seen) out[n++] = RowDest{dest, k, -1};
    }
  } else {
    for (int k = 0; k < K; ++k)
      if (ids[k] >= 0) out[n++] = RowDest{map.rank_of[ids[k]], k, ids[k]};
  }
  return n;
}

// The ids and weights row that arrives with one routed row.
inline void deliver_row(DispatchModel m, const ExpertMap& map, int K, const std::int32_t* ids, const float* w,
                        const RowDest& row, std::int32_t* ids_out, float* w_out) {
  switch (id_space(m)) {
    case IdSpace::global:
      for (int k = 0; k < K; ++k) ids_out[k] = ids[k], w_out[k] = w[k];
      break;
    case IdSpace::local:  // DeepEP HT: local ids, -1 and a zero weight for non-local experts
      for (int k = 0; k < K; ++k) {
        const bool local = ids[k] >= 0 && map.rank_of[ids[k]] == row.dest;
        ids_out[k] = local ? map.local_of[ids[k]] : -1;
        w_out[k] = local ? w[k] : 0.0f;
      }
      break;
    case IdSpace::implied:
      for (int k = 0; k < K; ++k) ids_out[k] = -1, w_out[k] = 0.0f;
      ids_out[row.slot] = map.local_of[row.target];
      w_out[row.slot] = w[row.slot];
      break;
  }
}

}  // namespace moesim::sim
