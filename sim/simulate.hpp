#pragma once
// One simulated layer: routing -> dispatch model -> consumer model (expert math through the CPU
// reference) -> combine model -> final output, every stage kept for the run file.
#include <cstdint>
#include <vector>

#include "combine_quant.hpp"
#include "consumer.hpp"
#include "dispatch.hpp"
#include "expert_map.hpp"
#include "pairing.hpp"
#include "reference.hpp"
#include "stats.hpp"

namespace moesim::sim {

struct SimOptions {
  DispatchOptions dispatch;
  ConsumerOptions consumer;
  CombineModel combine = CombineModel::rank_sum;
  DeepepVersion deepep_version = DeepepVersion::v1;  // rank-sum's order after deepep-ht (pairing.hpp)
  CombineQuantOptions combine_quant;                  // MORI's combine quantization (mori + rank-sum only)
  Numerics numerics = Numerics::exact;
  DType fp8_format = DType::e4m3;
  bool logical_ids = false;  // trace ids are logical (EPLB placements): pick replicas by `replica`
  ReplicaPolicy replica = ReplicaPolicy::round_robin;
  int threads = 1;
  ExpertBackend* backend = nullptr;  // where the expert FFNs run; nullptr: the CPU reference kernel
  // Storage the expert side reuses for its per-job outputs (nullptr: its own, freed after the
  // call). A caller that simulates many times (diagnose) keeps one, so the [jobs, H] buffer is not
  // faulted in afresh each time; one simulation at a time may use it.
  struct ExpertScratch* scratch = nullptr;
  // Bytes of per-job expert outputs held at once: past it the expert side runs chunks of
  // destination ranks one after another (the same bits, more and smaller backend calls).
  std::int64_t job_budget = std::int64_t{4} << 30;
};

struct ExpertScratch {
  Values job_out;  // [jobs, H]
};

struct RankRun {
  Values expert_rows;  // [N, H] what the expert side returned for each received row
  Values expert_out;   // [T, K, H] slot k's unweighted expert output as this run computed it
  Values combine_out;  // [T, H]
  // mori rank-sum: MORI combine's output weights [T, K], float32: the weights row each distinct
  // destination rank returned, summed in first-slot order (weights x unique destination ranks).
  std::vector<float> combine_weights;
  Values final_out;    // [T, H]
};

struct LayerRun {
  int layer_index = 0;
  Dispatch dispatch;
  std::vector<RankRun> ranks;
  RoutingStats stats;
};

// The routing of every rank of one layer as dispatch sees it (physical ids).
std::vector<SourceRouting> layer_sources(const Trace& trace, int layer_pos, const ExpertMap& map,
                                         const SimOptions& options);
// The trace with every layer's ids as dispatch sees them (logical ids resolved to replicas), so
// the reference, which reads ids as physical, computes the same experts. Replicas share weights,
// so the replica choice never changes the math.
Trace with_physical_ids(const Trace& trace, const ExpertMap& map, const SimOptions& options);
StatsInput stats_input(const TraceConfig& config, const ExpertMap& map, const SimOptions& options);

// Needs every rank's x loaded. Throws Error for bad options (receive overflow, missing x).
LayerRun simulate_layer(const Trace& trace, int layer_pos, const WeightProvider& weights, const ExpertMap& map,
                        const SimOptions& options);

}  // namespace moesim::sim
