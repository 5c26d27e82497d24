#pragma once
// Captured receive rows mapped back to their source tokens through src_token_pos, shared by
// the scoring and the fitted hypotheses of moesim diagnose.
#include <cstdint>
#include <vector>

#include "dispatch.hpp"
#include "trace.hpp"

namespace moesim::sim {

struct CapturedRows {
  std::int64_t valid = 0;      // total_recv when captured, else the rows held
  bool positions = false;      // src_token_pos captured and its encoding known
  std::vector<int> src_rank;   // [valid], -1 where the position decodes to no source token
  std::vector<std::int64_t> token;
  std::vector<int> slot;       // -1 unless the encoding carries the slot
};

// The per-rank token capacity positions were encoded with: the option's, else the largest rank.
inline std::int64_t capture_max_tokens(const Layer& layer, const DispatchOptions& o) {
  if (o.max_tokens_per_rank > 0) return o.max_tokens_per_rank;
  std::int64_t m = 1;
  for (const auto& r : layer.ranks) m = r.num_tokens > m ? r.num_tokens : m;
  return m;
}

inline CapturedRows decode_captured(const Layer& layer, int rank, std::int64_t max_tokens, int top_k) {
  const Captured& cap = layer.ranks[rank].captured;
  CapturedRows out;
  out.valid = cap.total_recv >= 0 ? cap.total_recv : cap.rows;
  out.src_rank.assign(out.valid, -1);
  out.token.assign(out.valid, -1);
  out.slot.assign(out.valid, -1);
  SrcPosEncoding enc = SrcPosEncoding::flat;
  if (cap.src_pos_encoding == "legacy") enc = SrcPosEncoding::legacy;
  else if (cap.src_pos_encoding == "pair") enc = SrcPosEncoding::pair;
  else if (!cap.src_pos_encoding.empty() && cap.src_pos_encoding != "flat") return out;
  if (static_cast<std::int64_t>(cap.src_token_pos.size()) < out.valid || out.valid == 0) return out;
  out.positions = true;
  const int R = static_cast<int>(layer.ranks.size());
  for (std::int64_t i = 0; i < out.valid; ++i) {
    int sr, slot;
    std::int64_t t;
    if (!decode_src_pos(enc, R, max_tokens, top_k, cap.src_token_pos[i], sr, t, slot) || t >= layer.ranks[sr].num_tokens)
      continue;
    out.src_rank[i] = sr;
    out.token[i] = t;
    out.slot[i] = slot;
  }
  return out;
}

}  // namespace moesim::sim
