#pragma once
// Expert weights generated from a trace's seed spec instead of stored (traces/SCHEMA.md,
// "Generator specs"): every logical expert's tensors come from their own stream, so one expert
// of a DeepSeek-V3-sized layer can be made alone, in any order.
#include <cstddef>
#include <cstdint>

#include "trace.hpp"

namespace moesim {

// The two generated tensors of one expert: w1 [rows1, H] and w2 [H, I], each from its own
// stream with unit-variance values times `stddev`, rounded to config.weight_dtype. The GPU
// backend generates from these on the device.
struct GeneratedTensor {
  std::uint64_t stream = 0;
  double stddev = 0;
  std::size_t count = 0;
};
struct ExpertStreams {
  GeneratedTensor w1, w2;
};
ExpertStreams expert_streams(const TraceConfig& config, const GeneratorSpec& spec, int layer, int expert, bool shared);

// Weights of logical expert `expert` (or shared expert `expert` when shared is true) of one
// layer: w1 [2I or I, H] and w2 [H, I], unit-variance values times spec.scale / sqrt(fan_in)
// (fan_in H for w1, I for w2), rounded to config.weight_dtype.
void generate_expert(const TraceConfig& config, const GeneratorSpec& spec, int layer, int expert, bool shared,
                     float* w1, float* w2);

// All of a layer's weights, laid out as the trace stores them.
ExpertWeights generate_weights(const TraceConfig& config, const GeneratorSpec& spec, int layer);

}  // namespace moesim
