#include "diff_bound.hpp"

#include <algorithm>
#include <cmath>

#include "diff_attrib.hpp"
#include "error.hpp"

namespace moesim::diff {

namespace {

// Dispatch copies tokens, ids and weights: nothing is rounded there.
class ExactBounds final : public ElementBounds {
 public:
  double at(std::uint64_t) override { return 0; }
};

// Expert outputs: a budget times the largest |value| of the element's row (its last axis).
class RowBounds final : public ElementBounds {
 public:
  RowBounds(const h5::File& f, const std::string& ds, bool raw, std::uint64_t row_len, double budget)
      : row_len_(row_len), budget_(budget) {
    BlockReader r(f, ds, raw, std::uint64_t{1} << 20);
    max_.assign(r.elements() / std::max<std::uint64_t>(row_len, 1), 0);
    std::vector<double> v;
    std::uint64_t first = 0;
    while (r.next(v, first))
      for (std::size_t i = 0; i < v.size(); ++i)
        if (std::isfinite(v[i])) {
          double& m = max_[(first + i) / row_len_];
          m = std::max(m, std::fabs(v[i]));
        }
  }
  double at(std::uint64_t flat) override { return budget_ * max_[flat / row_len_]; }

 private:
  std::uint64_t row_len_;
  double budget_;
  std::vector<double> max_;
};

// combine_out and final_out: one token's H bounds, from its slot outputs and router weights.
class TokenBounds final : public ElementBounds {
 public:
  TokenBounds(const h5::File& slots_file, const std::string& slots_ds, const h5::File* final_file,
              const std::string& final_ds, bool raw, const bound::Budget& budget, const std::vector<float>& weights,
              int K, int H)
      : slots_(slots_file, slots_ds, raw, std::uint64_t{1} << 20),
        budget_(budget),
        weights_(weights),
        K_(K),
        H_(H) {
    if (final_file) final_.emplace(*final_file, final_ds, raw, std::uint64_t{1} << 20);
  }
  double at(std::uint64_t flat) override {
    const std::uint64_t t = flat / static_cast<std::uint64_t>(H_);
    if (t != token_) {
      slots_.read_row(t, y_);
      for (auto& v : y_)
        if (!std::isfinite(v)) v = 0;  // a non-finite slot output is judged where it is stored
      if (final_) final_->read_row(t, f_);
      bounds_.resize(static_cast<std::size_t>(H_));
      budget_.token(y_.data(), &weights_[t * static_cast<std::uint64_t>(K_)], final_ ? f_.data() : nullptr,
                    bounds_.data());
      token_ = t;
    }
    return bounds_[flat % static_cast<std::uint64_t>(H_)];
  }

 private:
  BlockReader slots_;
  std::optional<BlockReader> final_;
  const bound::Budget& budget_;
  const std::vector<float>& weights_;
  int K_, H_;
  std::uint64_t token_ = ~std::uint64_t{0};
  std::vector<double> y_, f_, bounds_;
};

std::optional<Numerics> numerics_of(const h5::File& f) {
  if (!f.has_attr("/", "numerics")) return std::nullopt;
  try {
    return parse_numerics(f.attr_string("/", "numerics"));
  } catch (const Error&) {
    return std::nullopt;
  }
}

bound::Side side_of(const h5::File& f, Numerics n) {
  const std::string combine = f.has_attr("/", "combine") ? f.attr_string("/", "combine") : "";
  return {n, bound::partial_levels(combine)};
}

bool shaped(const h5::File& f, const std::string& ds, const std::vector<std::uint64_t>& dims) {
  return f.exists(ds) && !f.is_group(ds) && f.info(ds).dims == dims;
}

}  // namespace

std::optional<DiffBound> DiffBound::make(const h5::File& a, const h5::File& b, const Trace* routing, std::string& note) {
  const auto na = numerics_of(a), nb = numerics_of(b);
  if (!na || !nb) return std::nullopt;  // traces and foreign files: torch.testing's defaults, no note
  if (!routing) {
    note = "the rounding bound needs the trace (its router weights and configuration): pass --trace; "
           "using torch.testing's tolerances";
    return std::nullopt;
  }
  return DiffBound(bound::Budget(routing->config, side_of(a, *na), side_of(b, *nb)), routing);
}

std::unique_ptr<ElementBounds> DiffBound::for_dataset(const h5::File& a, const h5::File& b, const std::string& ds,
                                                      const std::vector<std::uint64_t>& dims, bool dispatch_stage,
                                                      bool raw, std::string& note) const {
  if (dispatch_stage) return std::make_unique<ExactBounds>();
  const PathInfo p = parse_path(ds);
  if (p.rank_group.empty() || ds.rfind(p.rank_group + "/", 0) != 0) return nullptr;
  const std::string leaf = ds.substr(p.rank_group.size() + 1);
  const TraceConfig& c = routing_->config;
  const auto H = static_cast<std::uint64_t>(c.hidden), K = static_cast<std::uint64_t>(c.top_k);
  if (dims.empty() || dims.back() != H) return nullptr;
  if (leaf == "expert_out" && dims.size() == 3 && dims[1] == K)
    return std::make_unique<RowBounds>(b, ds, raw, H, budget_.expert());
  if (leaf == "expert_rows" && dims.size() == 2) return std::make_unique<RowBounds>(b, ds, raw, H, budget_.received_row());
  if ((leaf != "final_out" && leaf != "combine_out") || dims.size() != 2) return nullptr;
  const std::uint64_t T = dims[0];
  const std::string slots = p.rank_group + "/expert_out";
  const h5::File* sf = shaped(b, slots, {T, K, H}) ? &b : shaped(a, slots, {T, K, H}) ? &a : nullptr;
  const Layer* layer = nullptr;
  for (const Layer& l : routing_->layers)
    if (l.index == p.layer) layer = &l;
  const bool routed = layer && p.rank < static_cast<int>(layer->ranks.size()) &&
                      layer->ranks[static_cast<std::size_t>(p.rank)].topk_weights.size() == T * K;
  if (!sf || !routed) {
    if (note.empty())
      note = ds + ": " + (sf ? "the trace has no router weights for this rank's tokens" : "no expert_out beside it") +
             ": judged with torch.testing's tolerances";
    return nullptr;
  }
  const auto& w = layer->ranks[static_cast<std::size_t>(p.rank)].topk_weights;
  return std::make_unique<TokenBounds>(*sf, slots, leaf == "final_out" ? &b : nullptr, ds, raw, budget_, w,
                                       static_cast<int>(K), static_cast<int>(H));
}

}  // namespace moesim::diff
