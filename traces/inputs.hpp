#pragma once
// Inputs generated from a trace's seed spec instead of stored: x for one (layer, rank).
#include "trace.hpp"

namespace moesim {

// Fills rank.x (and rank.x_scales for fp8 tokens) for rank.num_tokens tokens: unit-variance
// values times spec.scale, rounded or block-quantized to the token dtype.
void generate_inputs(const TraceConfig& config, const GeneratorSpec& spec, int layer, int rank, RankInput& out);

}  // namespace moesim
