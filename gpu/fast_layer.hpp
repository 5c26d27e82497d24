#pragma once
// The GPU's fast mode: a whole layer on one device with the real kernels' speed and their
// order-dependent rounding, held to the bf16 rounding bound against `exact`, not to bits
// (reference/NUMERICS.md, "Fast mode"). The host's plan (reference/expert_rows.hpp) says which
// rows each expert computes; the device dispatches them (a gather of bf16 rows), runs each
// expert's two GEMMs through the vendor BLAS with the activation between, and combines: in a
// fixed slot order (`ordered`), or with float atomics in whatever order the hardware adds them
// (`atomic`), as kernels that accumulate with atomics do. Plain C++ for the CLI and the tests.
#include <cstdint>
#include <memory>
#include <string>

#include "reference.hpp"

namespace moesim::gpu {

// Throws Error naming the trace for what the fast mode does not compute (fp8 tokens, router
// weight on the input, expert biases, swiglu_oai, the shared-expert gate).
void refuse_fast_unsupported(const Trace& trace);

// fp8 numerics in the fast mode need what the block-scaled GEMM multiplies: scale_block 128 and
// hidden a multiple of it, e4m3 weights (their values are what the contract's rb(w) gives), and
// OCP e4m3fn as the dispatch format. Throws Error naming the trace otherwise.
void refuse_fast_fp8(const Trace& trace, DType fp8_format);

// Whether this build has the vendor BLAS the fast mode needs (false on AMD without hipBLAS).
bool vendor_blas_built();

enum class FastCombine { ordered, atomic };

// Device time of each stage of the last run, in milliseconds, and the bytes each moved.
struct FastTimes {
  double dispatch_ms = 0, gemm1_ms = 0, activation_ms = 0, gemm2_ms = 0, shared_ms = 0, combine_ms = 0, total_ms = 0;
  double dispatch_bytes = 0, combine_bytes = 0;  // read + written; combine: the ordered one's (atomic adds its accumulator)
  double flops = 0;                              // routed and shared GEMMs
  std::int64_t rows = 0;                         // routed rows
};

class FastLayer {
 public:
  // Uploads the layer's tokens and every expert's weights (bf16) once. Throws Error naming the
  // trace for what the fast mode does not compute (numerics other than bf16, fp8 tokens, router
  // weight on the input, expert biases, swiglu_oai, the shared-expert gate).
  // numerics bf16, or fp8: the routed GEMM1 on the contract's dispatch-quantized e4m3 rows with
  // their 1 x 128 scales and e4m3 w1, through the vendor's block-scaled fp8 GEMM (refused, naming
  // the trace, where the trace does not fit it: refuse_fast_fp8).
  FastLayer(const Trace& trace, const WeightProvider& weights, int layer_pos, FastCombine combine, int device = 0,
            Numerics numerics = Numerics::bf16, DType fp8_format = DType::e4m3);
  ~FastLayer();
  FastLayer(const FastLayer&) = delete;
  FastLayer& operator=(const FastLayer&) = delete;

  // The combine of the next run(): one upload of the weights serves both.
  void set_combine(FastCombine combine);
  FastTimes run();  // the layer, on the device; outputs stay there
  // The last run's outputs as the reference lays them out (bf16 values in float); expert_out
  // [T, K, H] only when asked (at production size it is gigabytes), else left empty.
  LayerOutputs outputs(bool expert_out) const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// "gpu-fast" / "gpu-atomic": the backend names result files record.
std::string fast_backend_name(FastCombine c);

// Every layer of the trace in fast mode.
std::vector<LayerOutputs> run_fast(const Trace& trace, const WeightProvider& weights, FastCombine combine,
                                   int device = 0, Numerics numerics = Numerics::bf16);

}  // namespace moesim::gpu
