#pragma once
// The fast mode's expert math as an ExpertBackend ("gpu-fast"): the rows the simulator's
// pairing or the reference hands each expert, computed the way the fast layer computes them
// (bf16 rows gathered on the device, the vendor BLAS's two GEMMs with the device's activation
// between), so `run`, `bisect` and `diagnose` replay any dispatch x consumer x combine pairing
// at the matrix units' speed. bf16 and fp8 numerics (fp8: the block-scaled fp8 GEMM1 of the fast
// layer); held to the rounding bound, not to bits (reference/NUMERICS.md, "Fast mode").
#include <memory>

#include "expert_backend.hpp"

namespace moesim::gpu {

// Throws Error naming the trace for what the fast mode refuses (gpu/fast_layer.hpp), and when
// the build has no vendor BLAS or the device is absent.
// `threads`: host threads for the host side of each call (widening the returned rows).
std::unique_ptr<ExpertBackend> make_fast_backend(const Trace& trace, const WeightProvider& weights, int device = 0,
                                                 int threads = 1);

}  // namespace moesim::gpu
