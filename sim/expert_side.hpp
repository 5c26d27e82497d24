#pragma once
// The expert side of every virtual rank: plans each received row's jobs with the consumer
// model, runs them grouped per logical expert through the reference FFN (run_expert's rows are
// bitwise independent of their grouping), and sums each row's jobs with the reference's
// combine primitive (reference/combine.hpp) at scale 1 and no shared expert: a row's partial
// is round(sum over its jobs, in slot order, of w_k * y_k), or y itself for an unweighted job.
#include <vector>

#include "simulate.hpp"

namespace moesim::sim {

// Fills expert_rows [N, H] and expert_out [T, K, H] of every rank in `out` (sized R).
void run_expert_side(const Trace& trace, int layer_pos, const WeightProvider& weights, const ExpertMap& map,
                     const Dispatch& dispatch, const SimOptions& options, std::vector<RankRun>& out);

// Throws Error when options ask for MORI's combine quantization where it does not apply.
void check_combine_quant(const SimOptions& options, int hidden);

// Fills combine_out and final_out of every rank from their expert_rows, with the combine model.
void run_combine(const Trace& trace, int layer_pos, const WeightProvider& weights, const ExpertMap& map,
                 const std::vector<SourceRouting>& sources, const Dispatch& dispatch, const SimOptions& options,
                 std::vector<RankRun>& out);

// MORI combine's output weights of source rank `s`, [T, K] (rank-sum after a mori dispatch `d`):
// the weights row each distinct destination rank returned, added in float32 from 0 in first-slot
// order. rank0: MORI's old -1 handling, a -1 slot reaching rank 0.
std::vector<float> mori_combine_weights(const ExpertMap& map, const SourceRouting& source, int s, const Dispatch& d,
                                        bool rank0);

}  // namespace moesim::sim
