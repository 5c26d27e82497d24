#pragma once
// Captures for the diagnose tests: a small trace whose captured side is filled from a simulated
// run (every receive buffer, per-row expert output, combine and final output), as a user's
// capture of a buggy integration would hold them.
#include <algorithm>
#include <string>

#include "diagnose.hpp"
#include "sim/sim_fixtures.hpp"

namespace moesim::test {

inline TraceShape diagnose_shape() {
  TraceShape s;
  s.ranks = 4;
  s.experts = 16;
  s.top_k = 4;
  s.hidden = 8;
  s.tokens = {7, 12, 5, 9};
  s.minus_one_rate = 0.15;
  s.seed = 11;
  return s;
}

inline std::vector<float> as_float(const Values& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
  return out;
}

// Fills every rank's captured side of a layer from a dispatch and its outputs; `x` gives the
// source tokens the run saw (normally the trace's own).
inline void fill_capture(Trace& tr, const sim::Dispatch& d, const std::vector<sim::RankRun>& ranks,
                         const std::vector<std::vector<float>>& x, bool outputs = true, int layer = 0) {
  const int K = tr.config.top_k, H = tr.config.hidden;
  for (int r = 0; r < tr.config.num_ranks; ++r) {
    const sim::RecvBuffer& b = d.ranks[r];
    Captured& cap = tr.layers[layer].ranks[r].captured;
    cap = Captured{};
    cap.total_recv = b.total_recv;
    cap.buffer_rows = std::max(b.buffer_rows, b.total_recv);
    cap.rows = b.total_recv;
    cap.recv_topk_ids = b.ids;
    cap.recv_weights = b.weights;
    cap.src_token_pos = b.src_pos;
    cap.src_pos_encoding = sim::rank_dedup(d.options.model) ? std::string(sim::name(d.options.encoding)) : "pair";
    cap.recv_x.resize(b.total_recv * H);
    for (std::int64_t i = 0; i < b.total_recv; ++i)
      std::copy_n(&x[b.src_rank[i]][static_cast<std::size_t>(b.src_token[i]) * H], H, &cap.recv_x[i * H]);
    (void)K;
    if (!outputs) continue;
    cap.expert_out = as_float(ranks[r].expert_rows);
    cap.expert_rows = b.total_recv;
    cap.combine_out = as_float(ranks[r].combine_out);
    cap.final_out = as_float(ranks[r].final_out);
  }
}

inline std::vector<std::vector<float>> trace_x(const Trace& tr, int layer = 0) {
  std::vector<std::vector<float>> x;
  for (const auto& in : tr.layers[layer].ranks) x.push_back(in.x);
  return x;
}

// A capture of a simulated run of one layer with these options.
inline void capture_run(Trace& tr, const sim::SimOptions& o, bool outputs = true, int layer = 0) {
  const sim::ExpertMap map = sim::make_expert_map(tr.config);
  const WeightProvider wp(tr);
  const sim::LayerRun run = sim::simulate_layer(tr, layer, wp, map, o);
  fill_capture(tr, run.dispatch, run.ranks, trace_x(tr, layer), outputs, layer);
}

inline sim::SimOptions options(sim::DispatchModel d, sim::ConsumerModel c, sim::CombineModel k) {
  sim::SimOptions o;
  o.dispatch.model = d;
  o.consumer.model = c;
  o.combine = k;
  o.numerics = Numerics::fp32;
  return o;
}

inline sim::DiagnoseOptions diagnose_options() {
  sim::DiagnoseOptions o;
  o.base.numerics = Numerics::fp32;
  return o;
}

inline const sim::Hypothesis& find_hypothesis(const sim::Diagnosis& d, const std::string& key) {
  for (const auto& h : d.hypotheses)
    if (h.key == key) return h;
  throw std::runtime_error("no hypothesis " + key);
}

inline const sim::Evaluation& evaluation_of(const sim::Diagnosis& d, const std::string& key) {
  for (const auto& e : d.ranked)
    if (d.hypothesis(e).key == key) return e;
  throw std::runtime_error("no evaluation " + key);
}

}  // namespace moesim::test
