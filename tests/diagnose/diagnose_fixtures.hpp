#pragma once
// Captures for the diagnose tests: a small trace whose captured side is filled from a simulated
// run (every receive buffer, per-row expert output, combine and final output), as a user's
// capture of a buggy integration would hold them.
#include <algorithm>
#include <string>

#include "capture_fill.hpp"
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

inline std::vector<std::vector<float>> trace_x(const Trace& tr, int layer = 0) {
  std::vector<std::vector<float>> x;
  for (const auto& in : tr.layers[layer].ranks) x.push_back(in.x);
  return x;
}

using sim::capture_run;
using sim::fill_capture;

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
