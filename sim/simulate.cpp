#include "simulate.hpp"

#include <string>

#include "error.hpp"
#include "trace_io.hpp"
#include "expert_side.hpp"

namespace moesim::sim {

std::vector<SourceRouting> layer_sources(const Trace& trace, int layer_pos, const ExpertMap& map,
                                         const SimOptions& o) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers.at(layer_pos);
  std::vector<SourceRouting> out(c.num_ranks);
  std::int64_t base = 0;
  for (int r = 0; r < c.num_ranks; ++r) {
    const RankInput& in = layer.ranks[r];
    out[r].num_tokens = in.num_tokens;
    out[r].ids = in.topk_ids;
    out[r].weights = in.topk_weights;
    if (o.logical_ids) {
      try {
        resolve_logical_ids(map, o.replica, r, base, c.top_k, out[r].ids);
      } catch (const Error& e) {
        throw Error(where(trace.path, rank_path(layer.index, r) + "/topk_ids") + e.what() + " (--ids logical)");
      }
    }
    base += in.num_tokens;
  }
  return out;
}

Trace with_physical_ids(const Trace& trace, const ExpertMap& map, const SimOptions& o) {
  Trace out = trace;
  for (std::size_t l = 0; l < out.layers.size(); ++l) {
    const auto sources = layer_sources(trace, static_cast<int>(l), map, o);
    for (int r = 0; r < trace.config.num_ranks; ++r) out.layers[l].ranks[r].topk_ids = sources[r].ids;
  }
  return out;
}

StatsInput stats_input(const TraceConfig& c, const ExpertMap& map, const SimOptions& o) {
  StatsInput s;
  s.map = &map;
  s.top_k = c.top_k;
  s.hidden = c.hidden;
  s.token_dtype = c.token_dtype;
  s.scale_block = c.scale_block;
  s.dispatch = o.dispatch;
  s.consumer = o.consumer;
  s.max_tokens = o.dispatch.max_tokens_per_rank;
  return s;
}

LayerRun simulate_layer(const Trace& trace, int layer_pos, const WeightProvider& weights, const ExpertMap& map,
                        const SimOptions& o) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers.at(layer_pos);
  for (int r = 0; r < c.num_ranks; ++r)
    if (static_cast<std::int64_t>(layer.ranks[r].x.size()) != layer.ranks[r].num_tokens * c.hidden)
      throw Error(where(trace.path, rank_path(layer.index, r) + "/x") + "tokens not loaded");
  check_combine_quant(o, c.hidden);
  LayerRun run;
  run.layer_index = layer.index;
  const auto sources = layer_sources(trace, layer_pos, map, o);
  run.dispatch = dispatch(map, c.top_k, sources, o.dispatch);
  run.stats = routing_stats(stats_input(c, map, o), sources, &run.dispatch);
  run.ranks.resize(c.num_ranks);
  run_expert_side(trace, layer_pos, weights, map, run.dispatch, o, run.ranks);
  run_combine(trace, layer_pos, weights, map, sources, run.dispatch, o, run.ranks);
  return run;
}

}  // namespace moesim::sim
