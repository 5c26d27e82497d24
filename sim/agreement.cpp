#include "agreement.hpp"

#include <algorithm>
#include <cmath>

namespace moesim::sim {

TokenBounds::TokenBounds(const bound::Budget& budget, const Values& slot_out, const std::vector<float>& weights,
                         const Values* final_out, int top_k, int hidden)
    : budget_(budget), slots_(slot_out), weights_(weights), final_(final_out), K_(top_k), H_(hidden) {}

const double* TokenBounds::row(std::int64_t t) {
  if (t == token_) return out_.data();
  const auto KH = static_cast<std::size_t>(K_) * H_, H = static_cast<std::size_t>(H_);
  y_.resize(KH);
  for (std::size_t i = 0; i < KH; ++i) {
    const double v = slots_[static_cast<std::size_t>(t) * KH + i];
    y_[i] = std::isfinite(v) ? v : 0;  // a non-finite slot output is judged where it is stored
  }
  if (final_) {
    f_.resize(H);
    for (std::size_t h = 0; h < H; ++h) f_[h] = (*final_)[static_cast<std::size_t>(t) * H + h];
  }
  out_.resize(H);
  budget_.token(y_.data(), &weights_[static_cast<std::size_t>(t) * K_], final_ ? f_.data() : nullptr, out_.data());
  token_ = t;
  return out_.data();
}

Agreement compare_final(const std::vector<RankRun>& ranks, const LayerOutputs& ref, const Trace& trace, int layer_pos,
                        Numerics numerics, CombineModel combine) {
  return compare_final(ranks, ref, trace, layer_pos, numerics, numerics, combine);
}

Agreement compare_final(const std::vector<RankRun>& ranks, const LayerOutputs& ref, const Trace& trace, int layer_pos,
                        Numerics numerics, Numerics reference_numerics, CombineModel combine) {
  const TraceConfig& c = trace.config;
  const int H = c.hidden, K = c.top_k;
  const bound::Budget budget(c, {numerics, bound::partial_levels(name(combine))}, {reference_numerics, 0});
  Agreement a;
  a.label = budget.label();
  for (std::size_t r = 0; r < ranks.size() && r < ref.ranks.size(); ++r) {
    const Values& got = ranks[r].final_out;
    const Values& want = ref.ranks[r].final_out;
    TokenBounds bounds(budget, ref.ranks[r].expert_out, trace.layers[layer_pos].ranks[r].topk_weights, &want, K, H);
    const std::size_t T = want.size() / H;
    a.tokens += static_cast<std::int64_t>(T);
    for (std::size_t t = 0; t < T; ++t) {
      const double* b = bounds.row(static_cast<std::int64_t>(t));
      bool bad = false;
      for (int h = 0; h < H; ++h) {
        const double g = got[t * H + h], e = want[t * H + h];
        const double q = bound::ratio(g, e, b[h]);
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
