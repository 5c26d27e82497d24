#pragma once
// The readable summary `moesim run` prints: pairing verdict, routing statistics, and how the
// simulated final output compares with the reference.
#include <ostream>
#include <string>

#include "pairing.hpp"
#include "reference.hpp"
#include "simulate.hpp"
#include "stats.hpp"

namespace moesim::sim {

void print_pairing(std::ostream& out, const SimOptions& options, const PairingVerdict& verdict);
void print_stats(std::ostream& out, const RoutingStats& stats, bool per_rank);

// Largest |run - reference| over every rank's final output, and the largest |reference|.
struct Agreement {
  double max_abs = 0;
  double max_ref = 0;
  std::int64_t bad_tokens = 0;  // tokens whose worst element is beyond tolerance
  std::int64_t tokens = 0;
  double relative() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};
// Tolerance relative to the largest reference magnitude: 1e-9 exact, 1e-4 fp32, 2e-2 bf16/fp8
// (a sum of K bf16-rounded partials in another order differs by a few bf16 ulps).
double agreement_tolerance(Numerics n);
Agreement compare_final(const LayerRun& run, const LayerOutputs& reference, int hidden, Numerics numerics);

}  // namespace moesim::sim
