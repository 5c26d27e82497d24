#pragma once
// Element-wise comparison and the aggregate metrics of one dataset pair. The five sums of
// calc_diff and the cosine are taken in float64 in an order fixed by the element index alone
// (four interleaved lanes per segment of 2^16 elements, segments in order: NUMERICS.md, "The
// sums diff reports"), so they do not depend on block size or thread count, and the lanes keep
// the pass off the latency of one chain of additions. sum_abs is taken in element order.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <algorithm>

#include "diff_tolerance.hpp"
#include "dtype.hpp"

namespace moesim::diff {

// How an element pair is judged.
enum class Criterion {
  tolerance,  // |a-b| <= atol + rtol*|b| (torch.testing; b is the second file, the reference)
  delta,      // h5diff -d: differ when |a-b| > delta
  relative,   // h5diff -p: differ when |a-b|/|a| > relative; a = 0 "not comparable" differs
              // (zero meaning |x| < DBL_EPSILON, as h5diff 1.10.8 does)
  bound,      // the rounding bound: |a-b| <= the element's bound (rounding_bound.hpp)
};

struct Metrics {
  std::uint64_t elements = 0;
  std::uint64_t differ = 0;      // a != b (NaN equals NaN), what plain h5diff counts
  std::uint64_t mismatched = 0;  // fail the criterion
  std::uint64_t finite_pairs = 0;
  std::uint64_t not_comparable = 0;  // -p: a = 0 with b != 0 (counted as mismatched, as h5diff)
  double max_abs = 0, sum_abs = 0;
  double max_rel = 0;  // |a-b|/|b|, infinite when b = 0 != a
  double max_ratio = 0;  // bound criterion: the largest |a-b| / bound
  double max_ulp = -1;  // in the comparison dtype; -1 when it has no ULP (integers)
  // DeepEP calc_diff and cosine similarity, over finite pairs.
  double sum_xy1 = 0, sum_sq1 = 0, sum_ab = 0, sum_aa = 0, sum_bb = 0;
  std::uint64_t nan_a = 0, nan_b = 0, inf_a = 0, inf_b = 0;
  std::uint64_t nonfinite_mismatch = 0;  // NaN or Inf in one file where the other differs

  double mean_abs() const { return finite_pairs ? sum_abs / static_cast<double>(finite_pairs) : 0; }
  double mismatch_percent() const { return elements ? 100.0 * mismatched / elements : 0; }
  // 1 - 2*sum(x'y')/sum(x'^2+y'^2), x' = a+1, y' = b+1 (DeepEP tests/utils.py calc_diff).
  double calc_diff() const;
  double cosine() const;  // 1 when both are all zeros
};

// Judges element pairs and accumulates Metrics.
class Comparator {
 public:
  Comparator(DType compare_type, Criterion criterion, Tolerance tol, double threshold, bool native_f32);
  struct Element {
    double abs = 0, rel = 0;
    bool mismatch = false, differ = false;
    bool new_max_abs = false, new_max_rel = false, new_max_ratio = false;  // this pair set the maximum
    double ratio = 0;  // bound criterion: |a-b| / bound
  };
  // `bound`: the element's rounding bound (Criterion::bound only).
  Element add(double a, double b, double bound = 0);
  // What add() does for the equal finite pairs at the start of [a, a + n), inline and with the
  // sums in registers (most pairs of a diff are equal); returns how many it took, stopping at the
  // first other pair. None where equal pairs mismatch (a negative -d).
  template <class T>
  std::size_t add_equal_run(const T* a, const T* b, std::size_t n) {
    if (equal_mismatches_) return 0;
    std::size_t i = 0;
    std::uint64_t at = m_.elements;
    while (i < n) {
      if (at % kSegment == 0 && at != 0) end_segment();
      const std::size_t end = i + std::min<std::uint64_t>(n - i, kSegment - at % kSegment);
      // Lane by lane up to a multiple of kLanes, kLanes pairs at a time in vector registers,
      // then the rest lane by lane; a pair that is not equal and finite ends the run.
      for (; i < end && at % kLanes != 0; ++i, ++at)
        if (!equal_one(a[i], b[i], static_cast<int>(at % kLanes))) return finish_run(i);
      const std::size_t body = equal_lanes(a + i, b + i, (end - i) / kLanes);
      i += body, at += body;
      for (; i < end; ++i, ++at)
        if (!equal_one(a[i], b[i], static_cast<int>(at % kLanes))) return finish_run(i);
    }
    return finish_run(i);
  }
  // The metrics so far (the current segment's lanes folded in, as at the end of the data).
  Metrics metrics() const;

  // Lanes per segment and elements per segment of the five sums (NUMERICS.md).
  static constexpr int kLanes = 4;
  static constexpr std::uint64_t kSegment = std::uint64_t{1} << 16;
  // A finite pair's terms added to lane j of the sums sum_xy1, sum_sq1, sum_ab, sum_aa, sum_bb.
  static void accumulate(double a, double b, double (*s)[kLanes], int j) {
    const double x = a + 1, y = b + 1;
    s[0][j] += x * y;
    s[1][j] += x * x + y * y;
    s[2][j] += a * b;
    s[3][j] += a * a;
    s[4][j] += b * b;
  }

 private:
  bool equal_mismatches_ = false;
  DType type_;
  Criterion criterion_;
  Tolerance tol_;
  double threshold_;
  bool native_f32_;  // h5diff subtracts float32 values in float32; -d/-p match it
  bool has_ulp_;
  Metrics m_;  // every field but the five sums, which live in lane_ and done_
  double lane_[5][kLanes] = {};  // the current segment's lanes
  double done_[5] = {};          // the finished segments, summed in segment order
  // Folds the current segment's lanes into done_ and clears them.
  void end_segment();
  std::size_t finish_run(std::size_t taken) {
    m_.elements += taken;
    m_.finite_pairs += taken;
    return taken;
  }
  // accumulate(v, v) for an equal pair with its equal products taken once: the same bits. |a - b|
  // = 0 adds nothing to sum_abs, and no ULP. False (nothing added) when the pair is not equal
  // and finite.
  template <class T>
  bool equal_one(T p, T q, int j) {
    const double v = static_cast<double>(p);
    if (!(p == q) || !(v - v == 0)) return false;
    const double x = v + 1, xx = x * x, vv = v * v;
    lane_[0][j] += xx;
    lane_[1][j] += xx + xx;
    lane_[2][j] += vv;
    lane_[3][j] += vv;
    lane_[4][j] += vv;
    return true;
  }
  // equal_one over up to `groups` groups of kLanes pairs, lane j of a group into lane j, with the
  // lanes in vector registers (lane-wise IEEE operations: the bits of equal_one). Returns the
  // pairs taken, stopping before the first group holding a pair that is not equal and finite.
  std::size_t equal_lanes(const float* a, const float* b, std::size_t groups);
  std::size_t equal_lanes(const double* a, const double* b, std::size_t groups);
};

// Distance in units in the last place of `t` (bf16, f16, f32, f64, fp8); NaN or Inf give -1.
double ulp_distance(double a, double b, DType t);

}  // namespace moesim::diff
