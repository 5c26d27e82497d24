#include "agreement.hpp"

#include <algorithm>
#include <cmath>

namespace moesim::sim {

TokenBounds::TokenBounds(const bound::Budget& budget, const Values& slot_out, const std::vector<float>& weights,
                         bool combine, const Values* final_out, int top_k, int hidden)
    : budget_(budget), slots_(slot_out), weights_(weights), combine_(combine), final_(final_out), K_(top_k), H_(hidden) {
  y_.resize(static_cast<std::size_t>(K_) * H_);
  comb_.resize(combine ? H_ : 0);
  f_.resize(final_out ? H_ : 0);
  fin_.resize(final_out ? H_ : 0);
}

namespace {
// n slot outputs as double, a non-finite one as 0: it is judged where it is stored.
template <class T>
void finite_or_zero(const T* v, std::size_t n, double* out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = std::isfinite(v[i]) ? static_cast<double>(v[i]) : 0.0;
}
}  // namespace

void TokenBounds::at(std::int64_t t) {
  const auto KH = static_cast<std::size_t>(K_) * H_, H = static_cast<std::size_t>(H_);
  const std::size_t at = static_cast<std::size_t>(t) * KH;
  if (slots_.wide) finite_or_zero(slots_.f64.data() + at, KH, y_.data());
  else finite_or_zero(slots_.f32.data() + at, KH, y_.data());
  if (final_)
    for (std::size_t h = 0; h < H; ++h) f_[h] = (*final_)[static_cast<std::size_t>(t) * H + h];
  budget_.tokens(y_.data(), &weights_[static_cast<std::size_t>(t) * K_], final_ ? f_.data() : nullptr,
                 combine_ ? comb_.data() : nullptr, final_ ? fin_.data() : nullptr);
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
    TokenBounds bounds(budget, ref.ranks[r].expert_out, trace.layers[layer_pos].ranks[r].topk_weights, false, &want, K, H);
    const std::size_t T = want.size() / H;
    a.tokens += static_cast<std::int64_t>(T);
    for (std::size_t t = 0; t < T; ++t) {
      bounds.at(static_cast<std::int64_t>(t));
      const double* b = bounds.final();
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
