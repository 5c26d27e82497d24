#pragma once
// The FFN of ONE expert on a block of rows. A row's result is bitwise independent of how many
// rows share the block and of what they hold: every output element is one accumulator that adds
// its products in ascending depth order (reference/NUMERICS.md), so the simulator may group rows
// however its dispatch model does and still reproduce the reference bit for bit.
#include <cstdint>
#include <vector>

#include "numerics.hpp"
#include "trace.hpp"
#include "weights.hpp"

namespace moesim {

// How token rows enter an expert: their stored dtype and, in fp8 mode, the dispatch quantizer.
struct ExpertOptions {
  Numerics numerics = Numerics::exact;
  DType token_dtype = DType::bf16;  // f32, bf16, e4m3 or e4m3fnuz, as the trace says
  int scale_block = 128;            // fp8 tokens and fp8 dispatch: 1 x scale_block blocks
  DType fp8_format = DType::e4m3;   // fp8 mode quantizes non-fp8 tokens to this (e4m3 or e4m3fnuz)
};

// Rows of token values as a trace holds them.
struct TokenRows {
  const float* x = nullptr;             // [rows, H] token dtype values (fp8: the fp8 values, unscaled)
  const float* scales = nullptr;        // [rows, ceil(H / scale_block)] fp8 tokens only
  const float* input_weights = nullptr; // [rows] router weight applied to the input, or nullptr
  std::int64_t rows = 0;
};

// One expert's weights converted to the mode's precision (bf16-rounded in bf16/fp8 modes) and
// packed once for the GEMM kernel; immutable afterwards, so threads may share it.
class PreparedExpert {
 public:
  PreparedExpert() = default;
  // alpha, limit: swiglu_oai's (TraceConfig::swiglu_alpha, swiglu_limit); unused otherwise.
  PreparedExpert(const ExpertMatrices& m, Activation activation, Numerics numerics, double alpha = 1.702,
                 double limit = 7.0);
  // Re-prepares for another expert, reusing this one's storage (fresh pages are slow to fault in).
  void assign(const ExpertMatrices& m, Activation activation, Numerics numerics, double alpha = 1.702,
              double limit = 7.0);
  int hidden() const { return hidden_; }
  int inter() const { return inter_; }
  Numerics numerics() const { return numerics_; }
  Activation activation() const { return activation_; }

 private:
  friend struct ExpertKernel;
  int hidden_ = 0, inter_ = 0;
  bool gated_ = true;
  Activation activation_ = Activation::silu_gated;
  Numerics numerics_ = Numerics::exact;
  double alpha_ = 1.702, limit_ = 7.0;
  std::vector<double> w1_f64_, w2_f64_, b1_f64_, b2_f64_;  // exact mode (biases empty when none)
  std::vector<float> w1_f32_, w2_f32_, b1_f32_, b2_f32_;   // every other mode
};

// Intermediate buffers run_expert reuses between calls; one per thread. Optional: without one,
// each call allocates its own.
struct ExpertWorkspace {
  std::vector<double> f64;
  std::vector<float> f32;
};

// The expert's output for every row: [rows, H], row-major. exact writes double; the other modes
// write float (holding bf16 values in bf16 and fp8 modes). Throws Error when out's type does
// not match expert.numerics(), or options.numerics differs from it.
void run_expert(const PreparedExpert& expert, const TokenRows& in, const ExpertOptions& options, double* out,
                ExpertWorkspace* workspace = nullptr);
void run_expert(const PreparedExpert& expert, const TokenRows& in, const ExpertOptions& options, float* out,
                ExpertWorkspace* workspace = nullptr);

// The row an expert's first GEMM sees, as the mode makes it from a stored token row:
// dequantized fp8, router weight on input applied, fp8 dispatch quantization (fp8 mode),
// bf16 rounding (bf16 mode). out: [H].
void expert_input_row(const TokenRows& in, std::int64_t row, int hidden, const ExpertOptions& options, double* out);
void expert_input_row(const TokenRows& in, std::int64_t row, int hidden, const ExpertOptions& options, float* out);

// act(x) in the mode's precision (float64 for exact, float32 otherwise; formulas in NUMERICS.md).
double activation_value(Activation a, double x);
float activation_value(Activation a, float x);

}  // namespace moesim
