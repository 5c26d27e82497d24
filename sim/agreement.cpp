#include "agreement.hpp"

#include <algorithm>
#include <cmath>

namespace moesim::sim {

Agreement compare_final(const std::vector<RankRun>& ranks, const LayerOutputs& ref, const Trace& trace, int layer_pos,
                        Numerics numerics, CombineModel combine) {
  const TraceConfig& c = trace.config;
  const int H = c.hidden, K = c.top_k;
  const bound::Budget budget(c, {numerics, bound::partial_levels(name(combine))}, {numerics, 0});
  Agreement a;
  a.label = budget.label();
  std::vector<double> slots(static_cast<std::size_t>(K) * H), fin(H), bounds(H);
  for (std::size_t r = 0; r < ranks.size() && r < ref.ranks.size(); ++r) {
    const Values& got = ranks[r].final_out;
    const Values& want = ref.ranks[r].final_out;
    const std::vector<float>& w = trace.layers[layer_pos].ranks[r].topk_weights;
    const std::size_t T = want.size() / H;
    a.tokens += static_cast<std::int64_t>(T);
    for (std::size_t t = 0; t < T; ++t) {
      for (std::size_t i = 0; i < slots.size(); ++i) {
        const double v = ref.ranks[r].expert_out[t * slots.size() + i];
        slots[i] = std::isfinite(v) ? v : 0;
      }
      for (int h = 0; h < H; ++h) fin[h] = want[t * H + h];
      budget.token(slots.data(), &w[t * K], fin.data(), bounds.data());
      bool bad = false;
      for (int h = 0; h < H; ++h) {
        const double g = got[t * H + h], e = want[t * H + h];
        const double q = bound::ratio(g, e, bounds[h]);
        a.max_abs = std::max(a.max_abs, std::isfinite(g) && std::isfinite(e) ? std::fabs(g - e) : INFINITY);
        bad = bad || q > 1;
        a.worst.add(q, {ref.layer_index, static_cast<int>(r), static_cast<std::int64_t>(t), -1, -1, h}, "final_out");
      }
      a.bad_tokens += bad;
    }
  }
  return a;
}

}  // namespace moesim::sim
