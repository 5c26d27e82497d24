#include "diff_metrics.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "cpu_isa.hpp"
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

namespace {
// A segment's sum: its lanes added pairwise, ((l0 + l1) + (l2 + l3)).
double fold(const double* l) { return (l[0] + l[1]) + (l[2] + l[3]); }
static_assert(Comparator::kLanes == 4, "fold adds four lanes");
}  // namespace

void Comparator::end_segment() {
  for (int m = 0; m < 5; ++m) {
    done_[m] += fold(lane_[m]);
    for (double& l : lane_[m]) l = 0;
  }
}

namespace {
// Vectors of kLanes lanes (GCC's vector extensions: lane-wise IEEE operations, SSE2 registers
// or wider where the compiler targets them).
typedef double Vd __attribute__((vector_size(sizeof(double) * Comparator::kLanes)));
typedef float Vf __attribute__((vector_size(sizeof(float) * Comparator::kLanes)));
typedef long long W2 __attribute__((vector_size(16)));
typedef long long W4 __attribute__((vector_size(32)));
static_assert(sizeof(Vf) == sizeof(W2) && sizeof(Vd) == sizeof(W4), "four lanes");

template <class VT, class W, class T>
inline __attribute__((always_inline)) std::size_t lanes_of_equal(double (*lane)[Comparator::kLanes], const T* a, const T* b, std::size_t groups) {
  constexpr int L = Comparator::kLanes;
  // Named locals, not an array: GCC keeps them in registers.
  Vd s0, s1, s2, s3, s4;
  std::memcpy(&s0, lane[0], sizeof s0);
  std::memcpy(&s1, lane[1], sizeof s1);
  std::memcpy(&s2, lane[2], sizeof s2);
  std::memcpy(&s3, lane[3], sizeof s3);
  std::memcpy(&s4, lane[4], sizeof s4);
  std::size_t g = 0;
  for (; g < groups; ++g) {
    VT p, q;
    std::memcpy(&p, a + g * L, sizeof p);
    std::memcpy(&q, b + g * L, sizeof q);
    // Equal and finite in T (a float is finite exactly when its double is), every lane at once.
    const W ok = reinterpret_cast<W>((p == q) & (p - p == 0));
    long long all = -1;
    for (std::size_t w = 0; w < sizeof(W) / sizeof(long long); ++w) all &= ok[w];
    if (all != -1) break;
    Vd v;
    for (int j = 0; j < L; ++j) v[j] = static_cast<double>(p[j]);
    const Vd x = v + 1, xx = x * x, vv = v * v;
    s0 += xx;
    s1 += xx + xx;
    s2 += vv;
    s3 += vv;
    s4 += vv;
  }
  std::memcpy(lane[0], &s0, sizeof s0);
  std::memcpy(lane[1], &s1, sizeof s1);
  std::memcpy(lane[2], &s2, sizeof s2);
  std::memcpy(lane[3], &s3, sizeof s3);
  std::memcpy(lane[4], &s4, sizeof s4);
  return g * L;
}
#if defined(__x86_64__)
// The same loop compiled for AVX2 (five accumulators in ymm registers instead of ten xmm ones,
// which SSE2's sixteen registers cannot hold with the temporaries); no FMA (-ffp-contract=off
// and no "fma" target): the same lane-wise operations, the same bits.
__attribute__((target("avx2"))) std::size_t lanes_avx2(double (*lane)[Comparator::kLanes], const float* a,
                                                       const float* b, std::size_t groups) {
  return lanes_of_equal<Vf, W2>(lane, a, b, groups);
}
__attribute__((target("avx2"))) std::size_t lanes_avx2(double (*lane)[Comparator::kLanes], const double* a,
                                                       const double* b, std::size_t groups) {
  return lanes_of_equal<Vd, W4>(lane, a, b, groups);
}

// AVX2 where the CPU has it, unless MOESIM_DIFF_ISA says (cpu_isa.hpp).
bool use_avx2() {
  static const bool avx2 = choose_avx2("MOESIM_DIFF_ISA", false);
  return avx2;
}
#endif
}  // namespace

std::size_t Comparator::equal_lanes(const float* a, const float* b, std::size_t groups) {
#if defined(__x86_64__)
  if (use_avx2()) return lanes_avx2(lane_, a, b, groups);
#endif
  return lanes_of_equal<Vf, W2>(lane_, a, b, groups);
}
std::size_t Comparator::equal_lanes(const double* a, const double* b, std::size_t groups) {
#if defined(__x86_64__)
  if (use_avx2()) return lanes_avx2(lane_, a, b, groups);
#endif
  return lanes_of_equal<Vd, W4>(lane_, a, b, groups);
}

Metrics Comparator::metrics() const {
  Metrics m = m_;
  double* out[5] = {&m.sum_xy1, &m.sum_sq1, &m.sum_ab, &m.sum_aa, &m.sum_bb};
  for (int k = 0; k < 5; ++k) *out[k] = done_[k] + fold(lane_[k]);
  return m;
}

Comparator::Element Comparator::add(double a, double b, double bound) {
  Element e;
  const std::uint64_t at = m_.elements;
  if (at % kSegment == 0 && at != 0) end_segment();
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
    accumulate(a, b, lane_, static_cast<int>(at % kLanes));
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
