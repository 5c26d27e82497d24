#pragma once
// Dispatch models: what each virtual rank receives from every rank's routing, laid out the way
// a real library lays it out (../shared/notes/ep-semantics.md). Each model's routing rule lives
// in route.hpp and its buffer layout in dispatch.cpp; both say which library they reproduce.
#include <cstdint>
#include <string_view>
#include <vector>

#include "expert_map.hpp"
#include "trace.hpp"

namespace moesim::sim {

enum class DispatchModel { mori, deepep_ht, deepep_ll, pplx, pairs };
std::string_view name(DispatchModel m);
DispatchModel parse_dispatch(std::string_view s);
// True for one row per (token, destination rank); false for one row per (token, expert).
bool rank_dedup(DispatchModel m);
// True for expert-major buffers [E_local, max_tokens * R, H] (deepep-ll, pplx).
bool expert_major(DispatchModel m);

// True where a source rank's rows stay one block: deepep-ht (grouped by ascending source rank)
// and deepep-ll (one (begin, count) range per source inside each local expert's block).
bool blocks_by_source(DispatchModel m);

// What the ids of a received row hold.
//   global:  top-k ids copied verbatim (mori, pairs).
//   local:   id - first local expert, -1 for non-local (deepep-ht).
//   implied: the layout has no id row (deepep-ll, pplx); moesim writes the row's local expert at
//            the slot it was sent for and -1 elsewhere, so every layout fits [N, K].
enum class IdSpace { global, local, implied };
std::string_view name(IdSpace s);
IdSpace id_space(DispatchModel m);

// src_token_pos encodings (MORI get_dispatch_src_token_pos):
//   flat:   srcPe * MaxNumTokensToSend + t, MaxNumTokensToSend = R * max_tokens (HEAD);
//   legacy: srcPe * max_tokens + t (before 2026-04; ambiguous once t >= max_tokens);
//   pair:   (srcPe * max_tokens + t) * K + slot, moesim's encoding for per-(token, expert) rows.
enum class SrcPosEncoding { flat, legacy, pair };
std::string_view name(SrcPosEncoding e);
SrcPosEncoding parse_src_pos_encoding(std::string_view s);

// MORI -1 handling: skip (mid-2026 on) or the old intranode truncation -1 / E_local == 0,
// which sent a -1 slot to rank 0.
enum class NegativeIds { skip, rank0 };
// Receive overflow: an error (what a checked build should do) or a silent drop of the rows
// past capacity (MORI issue 356: the assert was compiled out).
enum class Overflow { error, drop };

struct DispatchOptions {
  DispatchModel model = DispatchModel::mori;
  SrcPosEncoding encoding = SrcPosEncoding::flat;
  NegativeIds negative = NegativeIds::skip;
  Overflow overflow = Overflow::error;
  std::int64_t max_tokens_per_rank = 0;  // MORI max_num_inp_token_per_rank / DeepEP LL max tokens; 0: largest T_r
  std::int64_t max_total_recv = 0;       // MORI max_total_recv_tokens; 0: unset
  bool shuffle = false;                  // permute arrival order like atomics-based slot reservation
  std::uint64_t shuffle_seed = 0;
};

// The routing of one source rank as dispatch sees it: physical ids.
struct SourceRouting {
  std::int64_t num_tokens = 0;
  std::vector<std::int32_t> ids;  // [T, K]
  std::vector<float> weights;     // [T, K]
};

// One rank's receive side. Only rows [0, total_recv) exist here; the rest of the
// buffer_rows-row buffer is stale in a real library (see consumer.hpp for how it is modelled).
struct RecvBuffer {
  std::int64_t total_recv = 0;
  std::int64_t buffer_rows = 0;
  std::vector<std::int32_t> src_rank, src_token, slot;  // [N]; slot: the top-k slot the row was sent for
  std::vector<std::int32_t> target;                     // [N] physical expert, -1 when the layout does not say
  std::vector<std::int64_t> src_pos;                    // [N] in the dispatch's encoding
  std::vector<std::int32_t> ids;                        // [N, K] as delivered
  std::vector<float> weights;                           // [N, K] as delivered
  std::vector<std::int64_t> expert_begin;               // expert-major: [E_local + 1] row offsets
  // deepep-ll: [E_local, R] DeepEP's packed_recv_layout_range, (begin << 32) | count, begin the
  // source's first row inside its local expert's block.
  std::vector<std::int64_t> layout_range;
  std::int64_t overflow = 0;                            // rows that arrived past capacity (dropped)
};

struct Dispatch {
  DispatchOptions options;
  int top_k = 0;
  std::int64_t max_tokens = 0;  // the per-rank token capacity used for sizes and encodings
  std::vector<RecvBuffer> ranks;
  // For each source rank, slot -> (dest rank, row) that carries it: [T, K], row -1 when the
  // slot sent nothing or its row was dropped. Rank-dedup models point every slot of a
  // destination at the one row; slot_first marks the slot that row was sent for.
  std::vector<std::vector<std::int32_t>> slot_dest, slot_row;
  std::vector<std::vector<std::uint8_t>> slot_first;
};

// Largest per-rank token count: the default capacity when the trace and options leave it unset.
std::int64_t default_max_tokens(const std::vector<SourceRouting>& sources);
// Rows of each rank's receive buffer for this model and capacity.
std::int64_t buffer_rows(const DispatchOptions& o, int num_ranks, int max_local, int top_k, std::int64_t max_tokens);

// Rows one receive block holds, -1 for no limit: the whole buffer for mori and pairs, a local
// expert's block for pplx (max_tokens * R), one (local expert, source rank) block for deepep-ll
// (max_tokens: duplicate ids or a source with more tokens overflow it), none for deepep-ht.
std::int64_t block_capacity(const DispatchOptions& o, int num_ranks, int max_local, int top_k, std::int64_t max_tokens);
// DeepEP's packing of one layout_range entry: count in the low 32 bits, begin in the high ones.
std::int64_t pack_layout_range(std::int64_t begin, std::int64_t count);

// Runs the dispatch model over every source rank. Throws Error on overflow when
// options.overflow is error.
Dispatch dispatch(const ExpertMap& map, int top_k, const std::vector<SourceRouting>& sources,
                  const DispatchOptions& options);

// src_token_pos of (source rank, token, slot) in an encoding; decode inverts it (slot -1 when
// the encoding has none) and returns false when pos is not a valid encoding.
std::int64_t encode_src_pos(SrcPosEncoding e, int num_ranks, std::int64_t max_tokens, int top_k, int src_rank,
                            std::int64_t token, int slot);
bool decode_src_pos(SrcPosEncoding e, int num_ranks, std::int64_t max_tokens, int top_k, std::int64_t pos,
                    int& src_rank, std::int64_t& token, int& slot);

}  // namespace moesim::sim
