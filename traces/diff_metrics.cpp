#include "diff_metrics.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "rounding_bound.hpp"

namespace moesim::diff {

double Metrics::calc_diff() const {
  if (sum_sq1 == 0) return 0;
  return 1.0 - 2.0 * sum_xy1 / sum_sq1;
}

double Metrics::cosine() const {
  if (sum_aa == 0 && sum_bb == 0) return 1;
  if (sum_aa == 0 || sum_bb == 0) return 0;
  return sum_ab / std::sqrt(sum_aa * sum_bb);
}

namespace {
// Sign-magnitude bits to a monotonic integer (+0 and -0 both 0).
__int128 ordered(std::uint64_t bits, int width) {
  const std::uint64_t sign = std::uint64_t{1} << (width - 1);
  const std::uint64_t mag = bits & (sign - 1);
  return (bits & sign) ? -static_cast<__int128>(mag) : static_cast<__int128>(mag);
}

std::uint64_t bits_of(double v, DType t) {
  switch (t) {
    case DType::f64: {
      std::uint64_t u;
      std::memcpy(&u, &v, 8);
      return u;
    }
    case DType::f32: {
      const float f = static_cast<float>(v);
      std::uint32_t u;
      std::memcpy(&u, &f, 4);
      return u;
    }
    case DType::bf16: return float_to_bf16_bits(static_cast<float>(v));
    case DType::f16: return float_to_f16_bits(static_cast<float>(v));
    default: return float_to_fp8_bits(static_cast<float>(v), t);
  }
}

int width_of(DType t) {
  switch (t) {
    case DType::f64: return 64;
    case DType::f32: return 32;
    case DType::bf16:
    case DType::f16: return 16;
    default: return 8;
  }
}

bool ulp_type(DType t) {
  return t == DType::f64 || t == DType::f32 || t == DType::bf16 || t == DType::f16 || is_fp8(t);
}
}  // namespace

double ulp_distance(double a, double b, DType t) {
  if (!ulp_type(t) || !std::isfinite(a) || !std::isfinite(b)) return -1;
  const int w = width_of(t);
  const __int128 d = ordered(bits_of(a, t), w) - ordered(bits_of(b, t), w);
  return static_cast<double>(d < 0 ? -d : d);
}

Comparator::Comparator(DType compare_type, Criterion criterion, Tolerance tol, double threshold, bool native_f32)
    : type_(compare_type),
      criterion_(criterion),
      tol_(tol),
      threshold_(threshold),
      native_f32_(native_f32),
      has_ulp_(ulp_type(compare_type)) {
  if (has_ulp_) m_.max_ulp = 0;
  equal_mismatches_ = criterion == Criterion::delta && 0 > threshold;
}

Comparator::Element Comparator::add(double a, double b, double bound) {
  Element e;
  ++m_.elements;
  if (criterion_ == Criterion::bound) {
    e.ratio = bound::ratio(a, b, bound);
    if (e.ratio > m_.max_ratio) m_.max_ratio = e.ratio, e.new_max_ratio = true;
  }
  const bool nan_a = std::isnan(a), nan_b = std::isnan(b);
  const bool inf_a = std::isinf(a), inf_b = std::isinf(b);
  m_.nan_a += nan_a;
  m_.nan_b += nan_b;
  m_.inf_a += inf_a;
  m_.inf_b += inf_b;
  if (nan_a || nan_b) {
    // NaN equals NaN (h5diff; torch with equal_nan); NaN against anything else differs.
    e.differ = e.mismatch = nan_a != nan_b;
    if (criterion_ == Criterion::bound) e.mismatch = true;  // never within a rounding bound
    e.abs = e.rel = e.differ ? std::numeric_limits<double>::infinity() : 0;
    m_.nonfinite_mismatch += e.differ;
    m_.differ += e.differ;
    m_.mismatched += e.mismatch;
    if (e.differ && m_.max_abs < e.abs) m_.max_abs = e.abs, e.new_max_abs = true;
    if (e.differ && m_.max_rel < e.rel) m_.max_rel = e.rel, e.new_max_rel = true;
    return e;
  }
  e.differ = a != b;
  e.abs = std::fabs(a - b);
  e.rel = e.abs == 0 ? 0 : (b == 0 ? std::numeric_limits<double>::infinity() : e.abs / std::fabs(b));
  if (inf_a || inf_b) {
    if (inf_a && inf_b && a == b) e.abs = e.rel = 0;
    m_.nonfinite_mismatch += e.differ;
  } else {
    ++m_.finite_pairs;
    m_.sum_abs += e.abs;
    double sums[5] = {m_.sum_xy1, m_.sum_sq1, m_.sum_ab, m_.sum_aa, m_.sum_bb};
    accumulate(a, b, sums);
    m_.sum_xy1 = sums[0], m_.sum_sq1 = sums[1], m_.sum_ab = sums[2], m_.sum_aa = sums[3], m_.sum_bb = sums[4];
    if (has_ulp_ && e.differ) {  // an equal pair is 0 ULPs apart
      const double u = ulp_distance(a, b, type_);
      if (u > m_.max_ulp) m_.max_ulp = u;
    }
  }
  switch (criterion_) {
    case Criterion::tolerance:
      // An infinity matches only itself; rtol * |inf| would otherwise pass anything.
      e.mismatch = (inf_a || inf_b) ? e.differ : e.differ && !(e.abs <= tol_.atol + tol_.rtol * std::fabs(b));
      break;
    case Criterion::delta: {
      const double d = native_f32_ ? std::fabs(static_cast<double>(static_cast<float>(a) - static_cast<float>(b)))
                                   : std::fabs(a - b);
      e.mismatch = d > threshold_;
      break;
    }
    case Criterion::relative: {
      // h5diff 1.10.8, observed: -p below DBL_EPSILON compares exactly; otherwise a value
      // under DBL_EPSILON in magnitude counts as zero, two zeros are equal, and a zero in
      // the first file against a non-zero is "not comparable" and differs.
      const double eps = std::numeric_limits<double>::epsilon();
      if (threshold_ < eps) {
        e.mismatch = e.differ;
        break;
      }
      const bool zero_a = std::fabs(a) < eps, zero_b = std::fabs(b) < eps;
      if (zero_a && zero_b) break;
      if (zero_a) {
        e.mismatch = true;
        ++m_.not_comparable;
        break;
      }
      const double r = native_f32_ ? std::fabs(static_cast<double>(static_cast<float>(b) - static_cast<float>(a)) /
                                               static_cast<double>(static_cast<float>(a)))
                                   : std::fabs((b - a) / a);
      e.mismatch = r > threshold_;
      break;
    }
    case Criterion::bound: e.mismatch = e.ratio > 1; break;
  }
  m_.differ += e.differ;
  m_.mismatched += e.mismatch;
  if (e.abs > m_.max_abs) m_.max_abs = e.abs, e.new_max_abs = true;
  if (e.rel > m_.max_rel) m_.max_rel = e.rel, e.new_max_rel = true;
  return e;
}

}  // namespace moesim::diff
