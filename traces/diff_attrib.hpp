#pragma once
// Maps an element of a compared dataset to its place in the MoE pipeline: the path gives layer
// and rank (/layers/<l>/ranks/<r>/...), the "axes" attribute names each index (token, row,
// slot, hidden ...), and sibling datasets give received rows their source (dispatch/src_rank,
// dispatch/src_token, or a capture's src_token_pos) and slots their expert (topk_ids,
// recv_topk_ids, dispatch/target_expert).
#include <cstdint>
#include <string>
#include <vector>

#include "diff.hpp"
#include "h5.hpp"

namespace moesim::diff {

struct PathInfo {
  int layer = -1, rank = -1;
  std::string rank_group;  // "/layers/<l>/ranks/<r>" or empty
};
PathInfo parse_path(const std::string& path);

// The "stage" attribute, or the stage a dataset's name implies in traces and older files.
Stage stage_of(const h5::File& f, const std::string& ds);

class Attributor {
 public:
  // `files` are searched in order for the sibling datasets (first file first).
  Attributor(const std::vector<const h5::File*>& files, const std::string& ds, const std::vector<std::uint64_t>& dims);
  Location locate(std::uint64_t flat) const;
  std::uint64_t row_elements() const { return row_elems_; }
  const std::string& axes() const { return axes_text_; }
  // The file whose topk_ids gave token slots their experts; empty when none did.
  const std::string& routing_source() const { return routing_from_; }
  const PathInfo& path() const { return path_; }

 private:
  PathInfo path_;
  std::vector<std::uint64_t> dims_;
  std::vector<std::string> axes_;
  std::string axes_text_;
  std::uint64_t row_elems_ = 1;
  int token_axis_ = -1, row_axis_ = -1, slot_axis_ = -1, column_axis_ = -1, expert_axis_ = -1;
  std::vector<std::int64_t> ids_;  // [rows, K] expert per slot
  std::int64_t ids_k_ = 0;
  std::vector<std::int64_t> target_expert_;  // [rows]
  std::vector<std::int64_t> src_rank_, src_token_;  // [rows]
  std::string routing_from_;
};

}  // namespace moesim::diff
