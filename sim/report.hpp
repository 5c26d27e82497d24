#pragma once
// The readable summary `moesim run` prints: pairing verdict and routing statistics (how the
// final output compares with the reference: agreement.hpp).
#include <ostream>
#include <string>

#include "pairing.hpp"
#include "reference.hpp"
#include "simulate.hpp"
#include "stats.hpp"

namespace moesim::sim {

void print_pairing(std::ostream& out, const SimOptions& options, const PairingVerdict& verdict);
void print_stats(std::ostream& out, const RoutingStats& stats, bool per_rank);

}  // namespace moesim::sim
