#pragma once
// moesim diff: compares every dataset two moesim HDF5 files share (traces, golden, run files,
// captures), with torch.testing-style tolerances, h5diff-compatible -d/-p counts, similarity
// metrics, and attribution of each mismatch to layer, rank, token, slot or expert and column.
// Datasets are streamed in blocks, so memory stays bounded by the block size plus per-row
// summaries, whatever the file size.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "diff_metrics.hpp"
#include "diff_tolerance.hpp"
#include "rounding_bound.hpp"
#include "trace.hpp"

namespace moesim::diff {

// Pipeline stages in the order data flows; `input` covers trace inputs (x, topk_ids).
enum class Stage { input, dispatch, expert, combine, final_, other };
std::string_view name(Stage s);

struct Options {
  // Files that both record their numerics are judged by the rounding bound (diff_bound.hpp)
  // unless a tolerance, -d or -p is given; false keeps torch.testing's defaults.
  bool rounding_aware = true;
  const Trace* routing = nullptr;  // routing and configuration for the bound, already read (bisect)
  ToleranceRules tolerances;
  std::optional<double> delta;     // h5diff -d: differ when |a-b| > delta
  std::optional<double> relative;  // h5diff -p: differ when |a-b|/|a| > relative (a = first file)
  bool raw = false;                // compare stored integers, no bf16/fp8 decoding (as h5diff does)
  bool match_rows = true;          // align received rows by their source before comparing
  std::vector<std::string> objects;  // restrict to these paths (datasets or groups); empty: all
  std::vector<std::string> exclude;  // skip objects (and what lies under them) matching these globs
  std::string routing_trace;         // a trace whose topk_ids attribute golden/run files; "" : none
  int worst_tokens = 10;
  bool verbose = false;  // text lists datasets within tolerance too
  std::uint64_t block_elements = std::uint64_t{1} << 20;  // streaming block size
};

// Where an element sits in the MoE pipeline; -1 where the path or axes do not say.
struct Location {
  int layer = -1, rank = -1;
  std::int64_t token = -1, row = -1;           // token on `rank`, or received row on `rank`
  int src_rank = -1;                           // for received rows: where the row came from
  std::int64_t src_token = -1;
  int slot = -1, expert = -1;
  std::int64_t column = -1;
  std::vector<std::uint64_t> index;            // the full element index
};

struct DatasetResult {
  std::string path;
  std::vector<std::uint64_t> dims;
  std::string dtype_a, dtype_b;  // effective element types ("bfloat16", "float32", "int32", ...)
  std::string axes;
  Stage stage = Stage::other;
  int layer = -1, rank = -1;
  Tolerance tolerance;
  std::string criterion;  // "atol+rtol", "delta", "relative", "exact", "bound"
  Metrics metrics;
  bool rows_matched = false;  // rows of the second file reordered to the first's sources
  Location max_abs_at, max_rel_at, first_mismatch_at, max_ratio_at;
  // Per first-axis row (token or received row): largest |a-b|, mean |a-b|, mismatched count.
  std::vector<double> row_max_abs, row_mean_abs;
  std::vector<std::int64_t> row_mismatched;
  bool failed() const { return metrics.mismatched > 0; }
};

struct AttributeResult {
  std::string object, name, value_a, value_b;
  bool numeric = false;  // numeric differences count; string ones are notes
  Stage stage = Stage::other;
  int layer = -1;
};

struct Incomparable {
  std::string path, why;
  Stage stage = Stage::other;
  int layer = -1;
};

// One way the files diverge, placed in the pipeline so the earliest can be named first.
struct Divergence {
  std::string path, what;
  Stage stage = Stage::other;
  int layer = -1;
};

// A transported value a file records (a received row's ids, weights or tokens, which dispatch
// copies from the source; combine weights, which follow from the routing) that differs from what
// the file's recorded dispatch model delivers for the routing. Copies are equal bits whatever the
// numerics, so this is a bug, never rounding. The simulator layer fills these
// (sim/transport_check.hpp): this layer knows no dispatch model.
struct TransportedMismatch {
  std::string file, path;  // the file and the dataset (or dispatch group, for rows) it is in
  std::string what;        // the sentence naming row, source, slot and both values
  Stage stage = Stage::dispatch;
  int layer = -1, rank = -1;
  std::int64_t row = -1, count = 0;  // the first such row (or token, for combine_weights); how many
  int src_rank = -1, slot = -1;
  std::int64_t src_token = -1;
  double got = 0, want = 0;
};

// Mismatch totals keyed by rank, expert or source token, in key order.
struct Tally {
  std::int64_t mismatched = 0;
  double max_abs = 0;
  std::string worst_dataset;
};
struct TokenKey {
  int layer, rank;
  std::int64_t token;
  auto operator<=>(const TokenKey&) const = default;
};

struct Result {
  std::string file_a, file_b, format_a, format_b;
  std::vector<DatasetResult> datasets;  // path order
  std::vector<AttributeResult> attributes;
  std::vector<std::string> only_a, only_b;
  std::vector<Incomparable> incomparable;
  bool structure_counts = true;  // same formats: objects in one file only count as differences
  std::map<int, Tally> per_rank;
  std::map<int, Tally> per_expert;
  std::map<TokenKey, Tally> per_token;
  std::string routing_note;  // where slot -> expert attribution came from
  std::string routing_file;  // the trace the files name or --trace gave ("" : none, or in memory)
  std::vector<TransportedMismatch> transported;
  std::string transport_note;  // why transported values were not checked, where they were not
  std::string bound_label;   // "the bf16 rounding bound" when the bound judged the outputs; else ""
  std::string bound_note;    // why the bound was not used, or not for some dataset
  bound::Worst worst;        // the element that used most of the bound

  bool bound_used() const { return !bound_label.empty(); }
  // "within the bf16 rounding bound (worst element used 0.31 of it)" or "exceeds ... at ...";
  // empty when the bound was not used.
  std::string verdict() const;

  std::int64_t failed_datasets() const;
  // Failing datasets, transported values, incomparable shapes and numeric attribute differences in pipeline
  // order: layer, then stage (input, dispatch, expert, combine, final), then path.
  std::vector<Divergence> divergences() const;
  std::vector<std::pair<TokenKey, Tally>> worst_tokens(int n) const;
  bool different() const;  // exit code 1
};

Result run(const std::string& file_a, const std::string& file_b, const Options& options);
// Whether an object is compared: under one of options.objects (or none given), and neither it
// nor a group above it matching an --exclude glob.
bool selected(const Options& options, const std::string& path);
bound::Place place_of(const Location& l);

// Renderers (diff_format.cpp, diff_report.cpp).
std::string format_text(const Result& r, const Options& options);
std::string format_json(const Result& r, const Options& options);
void write_report(const Result& r, const Options& options, const std::string& path);

}  // namespace moesim::diff
