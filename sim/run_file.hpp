#pragma once
// Simulator run files (traces/SCHEMA.md, "Golden and run files"): the golden layout (final_out,
// expert_out per rank, written by the reference's own writer so the two diff) plus every stage
// of the simulated pipeline per rank and the routing statistics under /stats.
#include <string>
#include <vector>

#include "h5.hpp"
#include "simulate.hpp"

namespace moesim::sim {

inline constexpr const char* kRunFormat = "moesim-run";

struct RunDescription {
  SimOptions options;
  PairingVerdict verdict;
  std::string command;
  std::string backend = "cpu";  // where the expert FFNs ran
};

// Writes to a temporary file renamed into place once complete.
void write_run(const std::string& out_path, const Trace& trace, const std::vector<LayerRun>& layers,
               const RunDescription& description);

// A routing-only run file: the header and /stats, no tensors (root attribute routing_only = 1).
void write_routing_only(const std::string& out_path, const Trace& trace, const std::vector<RoutingStats>& stats,
                        const std::vector<int>& layer_indices, const RunDescription& description);

// /stats/layers/<l>/...: per-rank and per-expert counts, [R, R] byte matrices, and the
// headline numbers as attributes. Shared by full and routing-only runs.
void write_stats(h5::File& file, int layer_index, const RoutingStats& stats);

}  // namespace moesim::sim
