#include "expert_rows.hpp"

#include <string>

#include "error.hpp"
#include "trace_io.hpp"

namespace moesim {
namespace {

void check_rank(const Trace& trace, int layer_pos, int r) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers[layer_pos];
  const RankInput& in = layer.ranks[r];
  const std::string base = rank_path(layer.index, r);
  const auto T = static_cast<std::size_t>(in.num_tokens);
  if (in.x.size() != T * c.hidden) throw Error(where(trace.path, base + "/x") + "not loaded or wrong size");
  if (is_fp8(c.token_dtype) && in.x_scales.size() != T * c.scales_per_token())
    throw Error(where(trace.path, base + "/x_scales") + "not loaded or wrong size");
  if (in.topk_ids.size() != T * c.top_k || in.topk_weights.size() != T * c.top_k)
    throw Error(where(trace.path, base + "/topk_ids") + "wrong size");
  for (std::size_t i = 0; i < in.topk_ids.size(); ++i) {
    const int id = in.topk_ids[i];
    if (id >= c.num_experts || id < -1)
      throw Error(where(trace.path, base + "/topk_ids") + "id " + std::to_string(id) + " at token " +
                  std::to_string(i / c.top_k) + " slot " + std::to_string(i % c.top_k) + " out of range [-1, " +
                  std::to_string(c.num_experts) + ")");
  }
}

void check_placement(const Trace& trace) {
  const Placement& p = trace.config.placement;
  const std::string ds = "/config/placement/physical_to_logical";
  if (p.physical_to_logical.size() != static_cast<std::size_t>(trace.config.num_experts))
    throw Error(where(trace.path, ds) + "has " + std::to_string(p.physical_to_logical.size()) + " entries, expected " +
                std::to_string(trace.config.num_experts));
  for (std::size_t e = 0; e < p.physical_to_logical.size(); ++e)
    if (p.physical_to_logical[e] < 0 || p.physical_to_logical[e] >= p.num_logical)
      throw Error(where(trace.path, ds) + "entry " + std::to_string(e) + " names logical expert " +
                  std::to_string(p.physical_to_logical[e]) + ", outside [0, " + std::to_string(p.num_logical) + ")");
}

}  // namespace

void check_layer(const Trace& trace, int layer_pos) {
  check_placement(trace);
  for (int r = 0; r < static_cast<int>(trace.layers[layer_pos].ranks.size()); ++r) check_rank(trace, layer_pos, r);
}


std::vector<std::vector<RowRef>> expert_rows(const TraceConfig& c, const Layer& layer) {
  const int K = c.top_k;
  std::vector<std::vector<RowRef>> rows(static_cast<std::size_t>(c.placement.num_logical));
  for (int r = 0; r < static_cast<int>(layer.ranks.size()); ++r) {
    const RankInput& in = layer.ranks[r];
    for (std::int64_t t = 0; t < in.num_tokens; ++t)
      for (int k = 0; k < K; ++k) {
        const int id = in.topk_ids[t * K + k];
        if (id >= 0) rows[c.logical_of(id)].push_back({r, t, k});
      }
  }
  return rows;
}

}  // namespace moesim
