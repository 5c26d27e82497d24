#pragma once
// The combine checks MORI's and DeepEP's own tests make with identity experts
// (../shared/notes/ep-semantics.md), on a layer simulated with the identity consumer. x is the
// token as stored (fp8 tokens dequantized in float64), u the number of distinct ranks among the
// token's valid ids:
//   rank-sum, internode-v1: combine_out = x * u. MORI (tests/python/ops/dispatch_combine_test_utils.py)
//     requires allclose(atol = rtol = 1e-2; 1e-1 with fp8_direct_cast, 7e-2 with fp8_blockwise
//     combine quantization) per token; DeepEP normal mode (tests/legacy/test_intranode.py)
//     calc_diff(combine_out / u, x) < 5e-6.
//   weighted: combine_out = x * (sum of the token's valid weights); DeepEP LL (test_low_latency.py)
//     calc_diff < 1e-5.
//   pair-sum: combine_out = x * (valid slots).
// In fp8 numerics (dispatch quantizes the rows) every library is held to DeepEP LL's fp8 bar,
// calc_diff < 9e-4, the only one a library states for that case.
// calc_diff(a, b) = 1 - 2 sum(a'b') / sum(a'^2 + b'^2), a' = a + 1, b' = b + 1, in float64 over the
// whole layer (DeepEP's deep_ep/utils/math.py).
#include <cstdint>
#include <string>

#include "simulate.hpp"

namespace moesim::sim {

struct IdentityCheck {
  std::string expectation;      // "x * unique ranks", "x * sum of weights", "x * valid slots"
  std::string bar;              // the library test whose criterion `passes` applies
  double calc_diff = 0;         // of combine_out against the expectation
  double max_abs = 0;           // largest |combine_out - expectation|
  std::int64_t bad_tokens = 0;  // tokens with an element past tol + tol * |expected| (MORI's allclose)
  std::int64_t tokens = 0;
  bool passes = false;
};

// Needs every rank's x loaded and `run` made with options.consumer.model == identity.
IdentityCheck check_identity(const Trace& trace, int layer_pos, const ExpertMap& map, const LayerRun& run,
                             const SimOptions& options);

}  // namespace moesim::sim
