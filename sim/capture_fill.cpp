#include "capture_fill.hpp"

#include <algorithm>

#include "expert_map.hpp"
#include "pairing.hpp"

namespace moesim::sim {
namespace {

std::vector<float> as_float(const Values& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}

}  // namespace

void fill_capture(Trace& trace, const Dispatch& dispatch, const std::vector<RankRun>& ranks,
                  const std::vector<const std::vector<float>*>& x, bool outputs, int layer_pos) {
  const int H = trace.config.hidden;
  for (int r = 0; r < trace.config.num_ranks; ++r) {
    const RecvBuffer& b = dispatch.ranks[r];
    Captured& cap = trace.layers[layer_pos].ranks[r].captured;
    cap = Captured{};
    cap.total_recv = b.total_recv;
    cap.buffer_rows = std::max(b.buffer_rows, b.total_recv);
    cap.rows = b.total_recv;
    cap.recv_topk_ids = b.ids;
    cap.recv_weights = b.weights;
    cap.src_token_pos = b.src_pos;
    cap.src_pos_encoding = rank_dedup(dispatch.options.model) ? std::string(name(dispatch.options.encoding)) : "pair";
    cap.recv_x.resize(static_cast<std::size_t>(b.total_recv) * H);
    for (std::int64_t i = 0; i < b.total_recv; ++i)
      std::copy_n(&(*x[b.src_rank[i]])[static_cast<std::size_t>(b.src_token[i]) * H], H, &cap.recv_x[i * H]);
    if (!outputs) continue;
    cap.expert_out = as_float(ranks[r].expert_rows);
    cap.expert_rows = b.total_recv;
    cap.combine_out = as_float(ranks[r].combine_out);
    cap.final_out = as_float(ranks[r].final_out);
  }
}

void capture_run(Trace& trace, const SimOptions& options, bool outputs, int layer_pos) {
  const ExpertMap map = make_expert_map(trace.config);
  std::vector<const std::vector<float>*> x;  // fill_capture writes only the captures beside them
  for (const auto& in : trace.layers[layer_pos].ranks) x.push_back(&in.x);
  if (!outputs) {  // the buffers alone need the dispatch, not the expert math (hours at the seed's scale on a CPU)
    const Dispatch d = dispatch(map, trace.config.top_k, layer_sources(trace, layer_pos, map, options), options.dispatch);
    fill_capture(trace, d, {}, x, false, layer_pos);
    return;
  }
  const WeightProvider wp(trace);
  const LayerRun run = simulate_layer(trace, layer_pos, wp, map, options);
  fill_capture(trace, run.dispatch, run.ranks, x, outputs, layer_pos);
}

}  // namespace moesim::sim
