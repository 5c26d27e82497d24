#include "identity_check.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace moesim::sim {

IdentityCheck check_identity(const Trace& tr, int lp, const ExpertMap& map, const LayerRun& run,
                             const SimOptions& o) {
  const TraceConfig& c = tr.config;
  const int K = c.top_k, H = c.hidden, S = c.scales_per_token();
  IdentityCheck ck;
  const bool weighted = o.combine == CombineModel::weighted, per_slot = o.combine == CombineModel::pair_sum;
  ck.expectation = weighted ? "x * sum of weights" : per_slot ? "x * valid slots" : "x * unique ranks";
  // MORI's tolerance grows with its combine quantization (1e-1 direct cast, 7e-2 blockwise).
  const CombineQuant cq = o.combine_quant.type;
  const double tol = cq == CombineQuant::fp8_direct_cast ? 1e-1 : cq == CombineQuant::fp8_blockwise ? 7e-2 : 1e-2;
  double dot = 0, norms = 0;
  std::vector<int> ranks;
  for (int r = 0; r < c.num_ranks; ++r) {
    const RankInput& in = tr.layers[lp].ranks[r];
    const Values& got = run.ranks[r].combine_out;
    for (std::int64_t t = 0; t < in.num_tokens; ++t) {
      ranks.clear();
      double factor = 0;
      for (int k = 0; k < K; ++k) {
        const int id = in.topk_ids[t * K + k];
        if (id < 0) continue;
        if (weighted) factor += static_cast<double>(in.topk_weights[t * K + k]);
        else if (per_slot) factor += 1;
        else if (std::find(ranks.begin(), ranks.end(), map.rank_of[id]) == ranks.end()) ranks.push_back(map.rank_of[id]);
      }
      if (!weighted && !per_slot) factor = static_cast<double>(ranks.size());
      bool bad = false;
      for (int h = 0; h < H; ++h) {
        double x = in.x[t * H + h];
        if (!in.x_scales.empty()) x *= static_cast<double>(in.x_scales[t * S + h / c.scale_block]);
        const double want = x * factor, y = got[static_cast<std::size_t>(t * H + h)];
        const double a = want + 1, b = y + 1;
        dot += a * b;
        norms += a * a + b * b;
        ck.max_abs = std::max(ck.max_abs, std::fabs(y - want));
        if (!(std::fabs(y - want) <= tol + tol * std::fabs(want))) bad = true;
      }
      ck.bad_tokens += bad;
      ++ck.tokens;
    }
  }
  ck.calc_diff = norms > 0 ? 1 - 2 * dot / norms : 0;
  if (o.numerics == Numerics::fp8) {
    // Dispatch quantized the rows: only DeepEP states a bar for that (test_low_latency.py's fp8 case).
    ck.bar = "DeepEP's calc_diff < 9e-4 for fp8 dispatch";
    ck.passes = ck.calc_diff < 9e-4;
    return ck;
  }
  switch (o.dispatch.model) {
    case DispatchModel::mori:
    case DispatchModel::pairs:
      ck.bar = "MORI's allclose(atol = rtol = " + std::string(tol == 1e-2 ? "1e-2" : tol == 1e-1 ? "1e-1" : "7e-2") +
               ") on every token";
      ck.passes = ck.bad_tokens == 0;
      break;
    case DispatchModel::deepep_ht:
      ck.bar = "DeepEP normal mode's calc_diff < 5e-6";
      ck.passes = ck.calc_diff < 5e-6;
      break;
    case DispatchModel::deepep_ll:
    case DispatchModel::pplx:
      ck.bar = "DeepEP LL's calc_diff < 1e-5";
      ck.passes = ck.calc_diff < 1e-5;
      break;
  }
  return ck;
}

}  // namespace moesim::sim
