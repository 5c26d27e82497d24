#pragma once
// Reading and writing trace files (traces/SCHEMA.md). The reader validates everything it reads
// and throws moesim::Error with one line naming file, dataset and index.
#include <string>
#include <vector>

#include "h5.hpp"
#include "trace.hpp"

namespace moesim {

inline constexpr int kSchemaVersion = 2;  // written; the reader accepts 1 and 2
inline constexpr const char* kTraceFormat = "moesim-trace";

struct ReadOptions {
  bool tensors = true;   // load (or generate) x; false reads routing only
  bool captured = true;  // load the captured side
  bool weights = true;   // load stored expert weights
};

struct ReadReport {
  static constexpr std::size_t kMaxWarnings = 20;  // kept; a damaged file could make millions
  std::vector<std::string> warnings;  // e.g. duplicate ids within a token's row, the first kMaxWarnings
  std::uint64_t total_warnings = 0;   // all of them, kept or not
  void warn(std::string w) {
    if (++total_warnings <= kMaxWarnings) warnings.push_back(std::move(w));
  }
  // "" or "... and N more warnings" for the ones not kept.
  std::string more() const {
    return total_warnings > warnings.size()
               ? "... and " + std::to_string(total_warnings - warnings.size()) + " more warnings"
               : std::string();
  }
};

Trace read_trace(const std::string& path, const ReadOptions& options = {}, ReadReport* report = nullptr);

// Writes to a temporary file and renames it into place.
void write_trace(const Trace& trace, const std::string& path);

// Lower-level pieces shared with golden and run files.
void write_trace_into(const Trace& trace, h5::File& file);
// Writes values of a float tensor as `dtype` (f32 as float, bf16/f16 as uint16 patterns,
// fp8 as uint8 codes) with the "dtype" attribute saying which. Values must be representable.
void write_values(h5::File& file, const std::string& ds, const std::vector<std::uint64_t>& dims,
                  const std::vector<float>& values, DType dtype);
// Reads a float tensor stored by write_values (or plain float32/float64), checking its shape and
// that it is stored as `expected` (tokens, weights); `any_float` accepts any float type (outputs).
std::vector<float> read_values(const h5::File& file, const std::string& ds, const std::vector<std::uint64_t>& dims,
                               DType expected, bool any_float = false);

// Reads a receive-buffer group (a trace's captured/, a run file's dispatch/: total_recv,
// buffer_rows, recv_topk_ids, recv_weights, recv_x, recv_scales, src_token_pos and its encoding,
// expert_out, combine_out, final_out, each where present) with the trace reader's checks;
// without `rows`, only the counts, ids, weights and positions (no [N, H] data).
void read_receive_buffers(const h5::File& file, const TraceConfig& config, const std::string& group,
                          std::int64_t num_tokens, Captured& out, bool rows = true);

// Loads (or generates) the tokens, x and x_scales, of layer `layer_pos` of `trace`, read from
// `file` without tensors, into `out` (that layer or a copy of it): one layer in memory at a time.
void read_layer_tokens(const h5::File& file, const Trace& trace, int layer_pos, Layer& out);

std::string layer_path(int layer);
std::string rank_path(int layer, int rank);

}  // namespace moesim
