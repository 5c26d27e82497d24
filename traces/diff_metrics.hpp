#pragma once
// Element-wise comparison and the aggregate metrics of one dataset pair. Sums are taken in
// element order in float64, so results do not depend on block size or thread count.
#include <cmath>
#include <cstddef>
#include <cstdint>

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
    double s[5] = {m_.sum_xy1, m_.sum_sq1, m_.sum_ab, m_.sum_aa, m_.sum_bb};
    std::size_t i = 0;
    for (; i < n; ++i) {
      if (!(a[i] == b[i])) break;
      const double v = a[i];
      if (!(v - v == 0)) break;  // not finite
      // accumulate(v, v) with its equal products taken once: the same bits. |a - b| = 0 adds
      // nothing to sum_abs, and no ULP.
      const double x = v + 1, xx = x * x, vv = v * v;
      s[0] += xx;
      s[1] += xx + xx;
      s[2] += vv;
      s[3] += vv;
      s[4] += vv;
    }
    m_.sum_xy1 = s[0], m_.sum_sq1 = s[1], m_.sum_ab = s[2], m_.sum_aa = s[3], m_.sum_bb = s[4];
    m_.elements += i;
    m_.finite_pairs += i;
    return i;
  }
  const Metrics& metrics() const { return m_; }

  // The sums of a finite pair, in element order: sum_xy1, sum_sq1, sum_ab, sum_aa, sum_bb.
  static void accumulate(double a, double b, double* s) {
    const double x = a + 1, y = b + 1;
    s[0] += x * y;
    s[1] += x * x + y * y;
    s[2] += a * b;
    s[3] += a * a;
    s[4] += b * b;
  }

 private:
  bool equal_mismatches_ = false;
  DType type_;
  Criterion criterion_;
  Tolerance tol_;
  double threshold_;
  bool native_f32_;  // h5diff subtracts float32 values in float32; -d/-p match it
  bool has_ulp_;
  Metrics m_;
};

// Distance in units in the last place of `t` (bf16, f16, f32, f64, fp8); NaN or Inf give -1.
double ulp_distance(double a, double b, DType t);

}  // namespace moesim::diff
