#pragma once
// What one rank's captured receive rows say on their own, before any bug model is simulated:
// whether they are the whole receive buffer (so the row count says nothing), which rows are
// stale by their content, what id space the ids' range implies and which dispatch models the
// rows can come from, whether identical rows can be copies of one token, and (with the source
// routing but no src_token_pos) which source tokens each row can come from. Each finding is a
// sentence with its evidence; moesim diagnose prints them first.
#include <cstdint>
#include <string>
#include <vector>

#include "capture_check.hpp"
#include "dispatch.hpp"
#include "expert_map.hpp"
#include "trace.hpp"

namespace moesim::sim {

struct ReceiveReading {
  int layer = 0, rank = 0;
  std::int64_t rows = 0;          // rows captured
  bool whole_buffer = false;      // the rows are a whole receive buffer and total_recv was not captured
  std::int64_t stale_from = -1;   // rows [stale_from, rows) are stale by their content; -1: no stale tail seen
  std::int64_t matched_end = -1;  // content matching: rows [matched_end, rows) match no source token; -1: not matched
  std::vector<std::int64_t> inferred_pos;  // [matched_end] flat src_token_pos of each row's match, -1 for none
  std::string id_space = "unknown";  // from the ids' range: "global", "local" or "unknown"
  std::vector<std::string> models;   // dispatch models whose rows these can be (empty: not decided)
  std::int64_t identical_groups = 0; // groups of two or more identical valid rows
  std::int64_t over_pair_groups = 0; // of them, groups with more copies than the local experts their ids name
  bool pairs_ruled_out = false;      // per-(token, expert) copies of one token cannot explain some group
  std::vector<std::string> sentences;  // each a deduction with its evidence
};

// Reads every captured rank of a layer; `checks` are that layer's check_captures results (their
// expected row counts per model), `sources_known` false when the trace holds no source routing.
std::vector<ReceiveReading> read_receive_sides(const Trace& trace, int layer_pos, const ExpertMap& map,
                                               const DispatchOptions& base, const std::vector<CaptureCheck>& checks,
                                               bool sources_known);

// The source routing is known when some rank of some layer has tokens.
bool has_source_routing(const Trace& trace);

// What to capture next to decide what the evidence leaves open: one line per tensor, with the
// library call that gives it and its shape at this trace's sizes.
std::vector<std::string> capture_next(const Trace& trace, const std::vector<int>& layers, DispatchModel library,
                                      std::int64_t max_tokens, bool need_outputs);

}  // namespace moesim::sim
