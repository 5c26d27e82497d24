#pragma once
// In-memory traces for the simulator tests: random routings without replacement, -1 sentinels
// at a rate, and x rows that encode their origin (rank, token) so a misplaced row shows.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "dispatch.hpp"
#include "random.hpp"
#include "trace.hpp"

namespace moesim::test {

struct TraceShape {
  int ranks = 4, experts = 16, top_k = 4, hidden = 8, inter = 4;
  std::vector<std::int64_t> tokens{7, 12, 0, 9};
  double minus_one_rate = 0.1;
  std::uint64_t seed = 1;
  DType token_dtype = DType::f32;
};

// x[t, 0] = rank, x[t, 1] = token, the rest seeded values; exactly representable in bf16 for
// small origins.
inline Trace make_trace(const TraceShape& s) {
  Trace tr;
  TraceConfig& c = tr.config;
  c.num_ranks = s.ranks;
  c.num_experts = s.experts;
  c.top_k = s.top_k;
  c.hidden = s.hidden;
  c.intermediate = s.inter;
  c.token_dtype = s.token_dtype;
  c.weight_dtype = DType::f32;
  c.placement = contiguous_placement(s.experts, s.ranks);
  tr.weight_spec.seed = s.seed + 100;
  tr.path = "memory.h5";
  Layer layer;
  layer.ranks.resize(s.ranks);
  for (int r = 0; r < s.ranks; ++r) {
    RankInput& in = layer.ranks[r];
    const std::int64_t T = s.tokens[r % s.tokens.size()];
    in.num_tokens = T;
    in.x.resize(T * s.hidden);
    in.topk_ids.resize(T * s.top_k);
    in.topk_weights.resize(T * s.top_k);
    const auto stream = stream_of(s.seed, {7, static_cast<std::uint64_t>(r)});
    std::uint64_t n = 0;
    for (std::int64_t t = 0; t < T; ++t) {
      std::vector<int> perm(s.experts);
      std::iota(perm.begin(), perm.end(), 0);
      for (int k = 0; k < s.top_k; ++k) {  // partial Fisher-Yates: distinct ids
        const int j = k + static_cast<int>(uniform01(stream, n++) * (s.experts - k));
        std::swap(perm[k], perm[std::min(j, s.experts - 1)]);
        const bool none = uniform01(stream, n++) < s.minus_one_rate;
        in.topk_ids[t * s.top_k + k] = none ? -1 : perm[k];
        in.topk_weights[t * s.top_k + k] = static_cast<float>(0.125 + 0.75 * uniform01(stream, n++));
      }
      in.x[t * s.hidden + 0] = static_cast<float>(r);
      if (s.hidden > 1) in.x[t * s.hidden + 1] = static_cast<float>(t);
      for (int h = 2; h < s.hidden; ++h)
        in.x[t * s.hidden + h] = round_bf16(static_cast<float>(uniform01(stream, n++) * 2.0 - 1.0));
    }
  }
  tr.layers.push_back(std::move(layer));
  return tr;
}

// Layer 0's routing of every rank as dispatch takes it (trace ids read as physical).
inline std::vector<sim::SourceRouting> sources_of(const Trace& tr) {
  std::vector<sim::SourceRouting> s(tr.config.num_ranks);
  for (int r = 0; r < tr.config.num_ranks; ++r) {
    s[r].num_tokens = tr.layers[0].ranks[r].num_tokens;
    s[r].ids = tr.layers[0].ranks[r].topk_ids;
    s[r].weights = tr.layers[0].ranks[r].topk_weights;
  }
  return s;
}

}  // namespace moesim::test
