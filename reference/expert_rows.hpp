#pragma once
// Which rows each logical expert of a layer computes: every (rank, token, slot) whose id is not
// -1, gathered per logical expert in (rank, token, slot) order. The CPU reference and the GPU's
// fast layer share this plan, so both compute the same rows in the same places.
#include <cstdint>
#include <vector>

#include "trace.hpp"

namespace moesim {

struct RowRef {  // one (rank, token, slot) routed to an expert
  int rank;
  std::int64_t token;
  int slot;
};

// Every rank's x, scales, ids and weights loaded with the sizes the config gives, ids in
// [-1, num_experts), the placement complete: throws Error naming the file and dataset.
void check_layer(const Trace& trace, int layer_pos);

// [num_logical] lists; the layer's ids must have been checked (in range, -1 allowed).
std::vector<std::vector<RowRef>> expert_rows(const TraceConfig& config, const Layer& layer);

}  // namespace moesim
