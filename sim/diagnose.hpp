#pragma once
// moesim diagnose: which integration bug explains a capture. What the receive rows say on their
// own comes first (diagnose_deduce.hpp: whole buffer, stale rows, id space, identical rows, rows
// matched to sources by content); then structural checks of the captured receive buffers
// (capture_check.hpp plus duplicate positions and identical rows with distinct sources); then
// every hypothesis of a catalog of known bugs, each a simulator
// configuration, is run on the trace and compared with what was captured, observation by
// observation (row counts, row sources, ids and weights, recv_x, per-row expert outputs, stale
// rows past total_recv, combine_out, final_out). Hypotheses are ranked by how many observations
// they leave unexplained, then by their summed scale-free error, then by catalog order, which
// lists the correct integration first and fitted models (free parameters) last.
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "capture_check.hpp"
#include "diagnose_deduce.hpp"
#include "simulate.hpp"

namespace moesim::sim {

// What a hypothesis changes beyond SimOptions.
enum class Mutation {
  none,
  weights_one,    // the consumer ignores the received router weights (treats them as 1)
  combine_recv_ids,  // combine given the received ids instead of the rank's own (mori issue 475)
  fit_rows,       // rows duplicated or dropped, fitted to the capture (mori issue 507)
  warmup_x,       // every source token is the one row the capture shows (a dummy warm-up batch)
  capacity,       // receive capacity from the trace, else from the captured buffer size (mori issue 356)
};

struct Hypothesis {
  std::string key;    // short stable name, e.g. "weights-twice"
  std::string title;  // one line: what the integration does wrong
  SimOptions options;
  Mutation mutation = Mutation::none;
  bool correct = false;
  bool structural = false;  // predicts receive buffers other than the correct integration's
  bool fitted = false;      // takes parameters from the capture itself
};

// The catalog for a trace whose library dispatch is `library`; `base` carries numerics,
// capacities and threads. The correct integration comes first.
std::vector<Hypothesis> catalog(const TraceConfig& config, DispatchModel library, const SimOptions& base);

enum Obs { obs_counts, obs_sources, obs_ids, obs_x, obs_expert, obs_stale, obs_combine, obs_final, kNumObs };
const char* obs_name(int o);
bool obs_numeric(int o);

// One observation's agreement with a hypothesis, summed over layers and captured ranks.
struct Tally {
  bool present = false;
  double bad = 0, total = 0;     // structural: rows (or ranks) that disagree, rows compared
  double dd = 0, cc = 0;         // numeric: sum (captured - predicted)^2, sum captured^2
  double xy = 0, xx_yy = 0;      // numeric: DeepEP calc_diff sums over x' = x + 1, y' = y + 1
  std::string first;             // the first disagreement, one line
  bool bounded = false;          // numeric, judged against the rounding bound: worst_ratio says
  double worst_ratio = 0;        // largest |captured - predicted| / bound
  double error(bool numeric) const;  // fraction of rows, or relative L2 (0 when absent)
  double calc_diff() const;
};

struct Evaluation {
  int index = 0;  // catalog position
  bool tested = true;
  std::string note;  // why not tested, or what was fitted
  Tally obs[kNumObs];
  int unexplained = 0;
  double score = 0;  // sum over present observations of min(error, 1)
  bool by_bound = true;  // numeric observations are judged by the rounding bound where they have one
  // Structural: no row disagrees; numeric: every element within the rounding bound (by_bound,
  // bounded) or relative L2 <= tol.
  bool explains(int o, double tol) const;
};

// Per-rank structural findings beyond capture_check's.
struct BufferFinding {
  int layer = 0, rank = 0;
  std::int64_t duplicate_positions = 0;  // valid rows whose src_token_pos repeats an earlier row's
  std::int64_t identical_rows = 0;       // valid rows whose recv_x equals a row of another source
  bool full = false;                     // total_recv equals the buffer size
  std::int64_t overflow = -1;            // full: rows the library's dispatch sends past it (-1: not computed)
};

// What the evidence supports, and moesim diagnose's exit code for it.
enum class Verdict {
  consistent,          // 0: the correct integration explains everything, outputs included
  explained,           // 1: a bug model explains the capture and the correct integration does not
  disagrees,           // 1: the correct integration leaves observations unexplained; no model explains them all
  buffers_consistent,  // 3: the buffers fit the correct integration; the consumer was not tested (no outputs)
  undecided,           // 4: nothing could be compared (no source routing, or no observation): capture more
};
int exit_code(Verdict v);

struct DiagnoseOptions {
  SimOptions base;          // numerics, fp8 format, threads, capacities
  bool library_set = false; // base.dispatch.model names the library; else the trace's library
  std::optional<int> layer; // position in trace.layers; all layers otherwise
  // Relative L2 under which a numeric observation is explained; <0: the rounding bound
  // (rounding_bound.hpp), the verdict run, diff and bisect give, with relative L2 by numerics for
  // what it does not cover (stale rows).
  double tolerance = -1;
  std::vector<std::string> only;  // evaluate just these catalog keys (and the correct integration)
  // Bytes of (token, expert) products kept to share between hypotheses (diagnose_products.hpp).
  std::int64_t products_budget = std::int64_t{4} << 30;
};

struct Diagnosis {
  std::vector<Hypothesis> hypotheses;
  std::vector<std::vector<CaptureCheck>> checks;  // per diagnosed layer
  std::vector<int> layers;                        // positions in trace.layers
  std::vector<BufferFinding> buffers;
  bool has_outputs = false;  // some rank captured expert_out, combine_out or final_out
  bool has_rows = false;     // some rank captured receive rows or counts
  double tolerance = 0;       // relative L2 where the bound does not judge
  std::string bound_label;    // "the bf16 rounding bound" when it judges the numeric observations
  std::vector<Evaluation> ranked;  // best first; untested hypotheses last
  bool sources_known = true;       // the trace holds some rank's source routing
  std::vector<ReceiveReading> readings;  // per diagnosed layer and captured rank
  std::vector<std::string> next;         // what to capture next (empty when nothing is missing)
  std::string answer;  // an all-k or whole-buffer answer's cost: computations per distinct source token
  std::int64_t products_computed = 0, products_reused = 0;  // expert rows computed, and served again
  bool consistent() const;         // the correct integration is first and explains everything
  Verdict verdict() const;
  const Hypothesis& hypothesis(const Evaluation& e) const { return hypotheses[e.index]; }
};

// The trace must be read with tensors and its captured side. Throws Error when nothing was captured.
Diagnosis diagnose(const Trace& trace, const DiagnoseOptions& options);

// What a hypothesis predicts for one layer: the dispatch as delivered (before any consumer-side
// mutation) and every rank's outputs, plus the expert outputs of captured rows past total_recv
// as the consumer would compute them if it read them (AITER leaves them uninitialized when it
// does not). With `outputs` false only the dispatch (and x) is predicted: a capture of buffers
// alone compares nothing the expert math computes. Exposed for tests that build captures.
struct Prediction {
  Dispatch dispatch;
  std::vector<RankRun> ranks;
  std::vector<std::vector<double>> stale;  // [R][(rows - total_recv) * H] what reading the stale rows computes
  bool stale_read = false;                 // the consumer reads them (whole buffer); else they stay uncomputed
  std::vector<const std::vector<float>*> x;  // [R] -> [T * H] the source tokens the hypothesis assumes
  std::shared_ptr<const Trace> copy;          // the trace they are in when not the one predicted (warm-up)
  bool tested = true;  // false: the hypothesis does not apply to this capture (note says why)
  std::string note;
};
// `reuse`: an earlier prediction whose buffers are filled again (a fresh buffer of a layer's size
// costs its page faults: at H = 7168, a third of diagnose's time went to clearing new pages).
Prediction predict(const Trace& trace, int layer_pos, const Hypothesis& h, const WeightProvider& weights,
                   const ExpertMap& map, bool outputs = true, Prediction reuse = {});

void print_diagnosis(std::ostream& out, const Trace& trace, const Diagnosis& d, int top);
void print_diagnosis_json(std::ostream& out, const Trace& trace, const Diagnosis& d);

}  // namespace moesim::sim
