#pragma once
// moesim bisect: finds where a candidate pipeline first diverges from the correct one (layer,
// then stage: dispatch, expert, combine, final; then the worst token), and shrinks the trace by
// delta debugging (tokens, then top-k slots, which drops the experts they name, then the rank
// count: the fewest ranks, with contiguous placement, that still diverge; then the expert
// count, keeping only the experts still routed to) to a minimal trace that still diverges at
// the same stage.
//
// The candidate is a simulator configuration, optionally with an injected fault; the reference
// is the simulator's correct pairing for the same dispatch model (its final output is checked
// against the CPU reference model first), so all four stages line up row for row.
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "diff.hpp"
#include "simulate.hpp"

namespace moesim::sim {

// A corruption entering the pipeline at `stage` for one source token of one layer and flowing
// downstream (dispatch: the token's received rows' weights and everything computed from them;
// expert: its expert outputs on; combine: its combine and final outputs; final: its final output).
// Layer, rank and token name the ORIGINAL trace, so the fault follows the token as the trace shrinks.
struct Fault {
  int layer = 0;
  diff::Stage stage = diff::Stage::expert;
  int rank = 0;
  std::int64_t token = 0;
  double delta = 1.0;
};
Fault parse_fault(const std::string& spec);  // "LAYER,STAGE,RANK,TOKEN[,DELTA]"
std::string fault_text(const Fault& f);

struct BisectOptions {
  SimOptions candidate;
  std::optional<Fault> fault;
  SimOptions reference;             // the correct pairing; bisect_defaults() fills it
  diff::ToleranceRules tolerances;  // empty: the rounding bound, as diff's default
  int max_tests = 4000;
  std::string work_dir;  // scratch files; must exist
};

// Where a run first diverges.
struct Divergence {
  bool found = false;
  int layer = -1;  // original layer index
  diff::Stage stage = diff::Stage::other;
  std::string dataset, what;
  int rank = -1;             // the worst source token of that layer and stage
  std::int64_t token = -1;
  double max_abs = 0;
  std::string verdict;  // diff's: "within the bf16 rounding bound (...)" or "exceeds it ... at ..."
};

struct BisectResult {
  Divergence first;              // on the whole trace
  Divergence minimal_divergence; // on the minimal trace, in its own rank and token numbering
  Trace minimal;                 // layers before the diverging one kept with no tokens
  std::vector<std::pair<int, std::int64_t>> kept_tokens;  // (rank, original token)
  std::optional<Fault> minimal_fault;  // the injected fault renumbered to the minimal trace's tokens
  std::int64_t tokens_before = 0, slots_before = 0, slots_after = 0;
  int ranks_before = 0, ranks_after = 0;  // num_ranks of the trace and of the minimal trace
  int experts_before = 0, experts_after = 0;
  int tests = 0;
  bool reference_agrees = true;  // the correct pairing matched the CPU reference model
  std::string reference_note;
};

// The trace must be read with tensors. Throws Error when the simulator rejects the trace.
BisectResult bisect(const Trace& trace, const BisectOptions& options);

// A recorded candidate (a run or golden-layout file, or a trace whose captured final_out /
// combine_out hold a real run's outputs) against the CPU reference model with `numerics` (a
// run file's own "numerics" attribute wins). Localizes only: a recording cannot be re-run.
struct RecordedDivergence {
  Divergence first;
  std::string source;
  Numerics numerics = Numerics::bf16;
  std::vector<std::tuple<int, std::int64_t, double>> worst;  // (rank, token, max abs) in that layer
};
RecordedDivergence locate_recorded(const Trace& trace, const std::string& candidate, Numerics numerics,
                                   const diff::ToleranceRules& tolerances, const std::string& work_dir);

// origin[layer][rank][t]: the original (rank, token) of local token t (identity for a whole
// trace); a shrunk trace may hold fewer ranks, so both are recorded.
using TokenId = std::pair<int, std::int64_t>;
using RankOrigin = std::vector<std::vector<TokenId>>;
using Origin = std::vector<RankOrigin>;

// Runs candidate and reference layer by layer and names the first divergence; tests counts runs.
Divergence find_divergence(const Trace& trace, const Origin& origin, const BisectOptions& options, int& tests);

// `minimal` (a cut of `original` whose diverging layer sits at `pos`) with the experts it still
// routes to renumbered compactly per rank and their weights stored; nullopt when that would not
// reduce the expert count or the placement is not contiguous.
std::optional<Trace> compact_experts(const Trace& original, std::size_t pos, const Trace& minimal);

// Adds the fault to a simulated layer whose tokens have the given origin.
void apply_fault(LayerRun& run, const Fault& fault, const RankOrigin& origin, int hidden, int top_k);

}  // namespace moesim::sim
