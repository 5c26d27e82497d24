#pragma once
// Where expert FFNs run. The reference and the simulator decide which token rows each expert
// gets; a backend computes their outputs with the bits reference/NUMERICS.md fixes. The CPU
// backend is the reference kernel (expert.hpp); gpu/ provides a device one, so run, golden,
// bisect and diagnose share every routing decision and differ only in where the math runs.
#include <cstdint>
#include <memory>
#include <string>

#include "expert.hpp"
#include "trace.hpp"
#include "weights.hpp"

namespace moesim {

// One token row of a layer: a source rank's token.
struct TokenRef {
  std::int32_t rank = 0;
  std::int64_t token = 0;
};

// One expert's FFN on rows of one layer.
struct ExpertTask {
  int layer_pos = 0;       // position in trace.layers
  int expert = 0;          // logical routed expert, or the shared expert's index when `shared`
  bool shared = false;
  ExpertOptions options;   // numerics, token dtype, fp8 dispatch format
  const TokenRef* rows = nullptr;
  std::int64_t num_rows = 0;
  const float* input_weights = nullptr;  // [num_rows] router weight on the input, or nullptr
  // When set, row j's H outputs go to out_rows[j] (of the run() overload's element type) and
  // run()'s `out` is unused: callers that scatter rows save a copy of every output.
  void* const* out_rows = nullptr;
};

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;
  // "cpu" or "gpu", recorded in result files' `backend` attribute.
  virtual std::string name() const = 0;
  // Workers that may call run() at once (each with its own worker index).
  virtual int workers(int threads) const = 0;
  // out: [num_rows, H] in the mode's type (double for exact, float otherwise), row j the
  // output of task.rows[j] (or task.out_rows). Every row's bits depend only on that row and the expert.
  virtual void run(const ExpertTask& task, double* out, int worker) = 0;
  virtual void run(const ExpertTask& task, float* out, int worker) = 0;
  // Where this backend's time went so far, one line ("" when it keeps no account).
  virtual std::string profile() const { return ""; }
};

// The CPU reference kernel on the rows of `trace` (every rank's x loaded), weights from
// `weights`; both must outlive the backend.
std::unique_ptr<ExpertBackend> make_cpu_backend(const Trace& trace, const WeightProvider& weights);

}  // namespace moesim
