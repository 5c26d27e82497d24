#pragma once
// Replaying a capture: checks the receive buffers a user captured against what each dispatch
// model would have delivered for the same routing, the way MORI's own test checks its rows
// (dispatch_combine_test_utils.py): row count against total_recv and the buffer size, every row
// against its decoded source bit for bit, the id space (global or local), duplicate and
// missing rows. Reusable: `moesim diagnose` builds its structural evidence on these findings.
#include <ostream>
#include <string>
#include <vector>

#include "dispatch.hpp"
#include "expert_map.hpp"
#include "trace.hpp"

namespace moesim::sim {

// The id space a rank's captured ids show by their range alone, over rows [0, rows): "global"
// when an id reaches past one rank's experts, "local" when every id lies in [-1, max_local) and
// this rank's global ids would reach further, else "unknown" ("none": no ids captured).
struct IdRange {
  std::string space = "none";
  std::int32_t highest = -1;     // the largest id
  std::int64_t minus_ones = 0;   // ids equal to -1
};
IdRange id_range(const Captured& cap, std::int64_t rows, int top_k, const ExpertMap& map, int rank);

// One received row that differs from what it should hold: which value, where, and both values
// (the first differing slot of ids or weights, the first differing column of x or scales).
struct RowMismatch {
  std::string field;  // "recv_topk_ids", "recv_weights", "recv_x", "recv_scales"; "extra" and
                      // "missing" for a row the model does not send, or sends and is absent
  std::int64_t row = -1;  // in the capture (-1 for a missing row)
  int src_rank = -1;
  std::int64_t src_token = -1;
  int slot = -1;            // -1: not slot-wise
  std::int64_t column = -1; // -1: not column-wise
  double got = 0, want = 0;
};

// One dispatch model's verdict on one rank's capture.
struct ModelFinding {
  std::string model;  // "mori", "mori (-1 to rank 0)", "deepep-ht", ...
  DispatchModel dispatch = DispatchModel::mori;
  NegativeIds negative = NegativeIds::skip;
  std::int64_t expected_rows = 0;
  std::int64_t expected_buffer_rows = 0;  // the model's full buffer at these capacities (informative:
                                          // it depends on settings the capture may not record)
  std::int64_t duplicate_rows = 0;   // captured rows beyond what the model sends for their source
  std::int64_t missing_rows = 0;     // rows the model sends that the capture lacks
  std::int64_t id_mismatches = 0;    // rows whose ids or weights differ from what the model delivers
  std::int64_t overflow = 0;         // rows the routing sends past the buffer's capacity (dropped)
  std::vector<std::string> evidence; // the first few mismatches, one line each
  std::vector<RowMismatch> mismatches;  // the same, with the values
  bool consistent() const;
};

struct CaptureCheck {
  int rank = 0;
  std::int64_t rows = 0;         // rows captured
  std::int64_t total_recv = -1;  // as captured (-1: not captured)
  std::int64_t buffer_rows = -1;
  std::int64_t valid_rows = 0;   // rows checked: total_recv when captured, else all
  std::string encoding;          // the capture's src_token_pos encoding
  bool has_positions = false;
  std::int64_t undecodable = 0;      // positions that decode to no source token
  std::int64_t x_mismatches = 0;     // rows whose x (or scales) differ from their decoded source
  std::vector<RowMismatch> x_rows;   // the first few of them, with the values
  std::int64_t global_id_rows = 0;   // rows whose ids equal the source's ids verbatim
  std::int64_t local_id_rows = 0;    // rows whose ids equal the source's ids made local to this rank
  IdRange range;                     // the ids' range over the valid rows
  std::string not_compared;          // why the rows are not compared with the dispatch models (empty: they are)
  std::vector<std::string> evidence; // model-independent findings
  std::vector<ModelFinding> models;
  // "global", "local" or "mixed" from the rows matched to their sources, else the range's reading
  std::string id_space() const;
  std::vector<std::string> consistent_models() const;
};

// Checks every captured rank of a layer. `base` supplies capacities (max tokens per rank); with
// `only_base`, only base's own model (and its -1 handling) is compared, not every model.
std::vector<CaptureCheck> check_captures(const Trace& trace, int layer_pos, const ExpertMap& map,
                                         const DispatchOptions& base, bool only_base = false);

void print_capture_check(std::ostream& out, const CaptureCheck& check);

}  // namespace moesim::sim
