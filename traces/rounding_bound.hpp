#pragma once
// The rounding-aware verdict run, diff, bisect and diagnose share (reference/NUMERICS.md, "How
// far two results may differ"): per element, the most two results that both follow the numerics
// contract may differ by, built from the magnitudes that entered the element, the unit roundoff
// of every rounding step the contract documents on its way, and the number of those steps; and
// the one sentence every command reports it in.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "numerics.hpp"
#include "trace.hpp"

namespace moesim::bound {

// One side of a comparison: its numerics, and how many levels of rounded partial sums its
// combine makes before the final sum (0: the reference's weighted sum; 1: rank-sum, which
// rounds each rank's partial; 2: internode-v1, per rank and per node).
struct Side {
  Numerics numerics = Numerics::exact;
  int partial_levels = 0;
};
int partial_levels(std::string_view combine_model);  // "rank-sum" 1, "internode-v1" 2, else 0

// The rounding budgets of one layer configuration compared across two sides. Each budget is a
// sum, over the rounding steps of both sides, of the step's unit roundoff.
class Budget {
 public:
  Budget(const TraceConfig& config, Side a, Side b);
  // An expert output element: this times the largest |value| of its row (the H outputs of one
  // expert for one token, as the reference side holds them).
  double expert() const { return expert_; }
  // A received row of a run file (an expert output, or a rank's rounded weighted partial).
  double received_row() const { return expert_ + sum_; }
  // Bounds of one token's H columns of combine_out (final_ref == nullptr) or final_out.
  // slot_out [K * H]: the reference side's unweighted slot outputs (zeros for -1 slots);
  // weights [K]: the router weights; final_ref [H]: the reference side's final output, whose
  // difference from the scaled routed sum gives the shared experts' magnitude.
  void token(const double* slot_out, const float* weights, const double* final_ref, double* out) const;
  // Both at once from one pass over the slots: combine_out's bounds where `combine_out` is given,
  // final_out's (final_ref needed) where `final_out` is; the same values as two token() calls.
  void tokens(const double* slot_out, const float* weights, const double* final_ref, double* combine_out,
              double* final_out) const;
  // "the bf16 rounding bound": named after the coarser side.
  std::string label() const;

 private:
  int hidden_ = 0, top_k_ = 0, num_shared_ = 0;
  bool weight_on_input_ = false;
  double scale_ = 1;
  Numerics coarser_ = Numerics::exact;
  double expert_ = 0, shared_expert_ = 0;  // relative to the row's largest |value|
  double sum_ = 0;         // the routed weighted sum, relative to sum_k |w_k y_k|
  double scaling_ = 0;     // the routed scaling, relative to scale * sum_k |w_k y_k|
  double add_shared_ = 0;  // adding the shared output, relative to scale * sum|w y| + |shared|
  double sum_shared_ = 0;  // summing several shared experts, relative to |shared|
};

// Where an element sits; -1 where unknown.
struct Place {
  int layer = -1, rank = -1;
  std::int64_t token = -1, row = -1;
  int slot = -1;
  std::int64_t column = -1;
};
std::string place_text(const Place& p);  // "layer 0, rank 2, token 17, column 5"

// |a - b| / bound: 0 for equal values, infinite past a zero bound and wherever either value is
// not finite (an overflowed output is never rounding, even where both sides overflowed).
// Inline: scoring calls it for every element.
inline double ratio(double a, double b, double bound) {
  if (!std::isfinite(a) || !std::isfinite(b)) return std::numeric_limits<double>::infinity();
  if (a == b) return 0;
  const double d = std::fabs(a - b);
  return bound > 0 ? d / bound : std::numeric_limits<double>::infinity();
}

// The worst element over everything a verdict covers.
struct Worst {
  double ratio = 0;
  Place at;
  std::string dataset;
  bool add(double r, const Place& p, const std::string& ds);  // true when it is the new worst
  bool within() const { return ratio <= 1; }
};

// "within the bf16 rounding bound (worst element used 0.31 of it)", or "exceeds the bf16
// rounding bound by 37x at layer 0, rank 2, token 17, column 5".
std::string verdict_text(const std::string& label, const Worst& w);

}  // namespace moesim::bound
