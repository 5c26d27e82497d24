#pragma once
// How a simulated (or predicted) layer's final output compares with the reference's: every
// element against the rounding bound (traces/rounding_bound.hpp), the one verdict run, bisect and
// diagnose give, as diff gives it for files.
#include <cstdint>
#include <string>

#include "pairing.hpp"
#include "reference.hpp"
#include "rounding_bound.hpp"
#include "simulate.hpp"

namespace moesim::sim {

struct Agreement {
  std::string label;    // "the bf16 rounding bound"
  bound::Worst worst;   // the element that used most of it
  double max_abs = 0;   // largest |run - reference|
  std::int64_t bad_tokens = 0;  // tokens with an element past the bound
  std::int64_t tokens = 0;
  bool agrees() const { return bad_tokens == 0; }
  std::string verdict() const { return bound::verdict_text(label, worst); }
};

// The bounds of one rank's token outputs, one token at a time, from the reference side's slot
// outputs [T, K, H], the router weights [T, K] and its final output: combine_out's (`combine`) and
// final_out's (`final_out` given) from one pass over the token's slots.
class TokenBounds {
 public:
  TokenBounds(const bound::Budget& budget, const Values& slot_out, const std::vector<float>& weights, bool combine,
              const Values* final_out, int top_k, int hidden);
  void at(std::int64_t token);                       // computes the token's bounds
  const double* combine() const { return comb_.data(); }  // H bounds of combine_out
  const double* final() const { return fin_.data(); }     // H bounds of final_out

 private:
  const bound::Budget& budget_;
  const Values& slots_;
  const std::vector<float>& weights_;
  bool combine_;
  const Values* final_;
  int K_, H_;
  std::vector<double> y_, f_, comb_, fin_;
};

// `final_out` [rank][T * H] of a pipeline whose combine is `combine`, against the reference's
// final and slot outputs for layer `layer_pos` of `trace`, both in `numerics`.
Agreement compare_final(const std::vector<RankRun>& ranks, const LayerOutputs& reference, const Trace& trace,
                        int layer_pos, Numerics numerics, CombineModel combine);
// The same with the reference in its own numerics (`exact` against a bf16 run, say).
Agreement compare_final(const std::vector<RankRun>& ranks, const LayerOutputs& reference, const Trace& trace,
                        int layer_pos, Numerics numerics, Numerics reference_numerics, CombineModel combine);
inline Agreement compare_final(const LayerRun& run, const LayerOutputs& reference, const Trace& trace, int layer_pos,
                               Numerics numerics, CombineModel combine) {
  return compare_final(run.ranks, reference, trace, layer_pos, numerics, combine);
}

}  // namespace moesim::sim
