#pragma once
// moesim's own transcendental functions, one implementation for the CPU reference and the GPU
// kernels. The C library's and the GPU's exp, log, cos, tanh and erf differ in the last bit, so
// every value that depends on one (activations, generated normal weights) would differ between
// backends. These are written with IEEE operations only: +, -, *, / and comparisons on double,
// integer and bit manipulation, conversions; no FMA (build with -ffp-contract=off on the host,
// -fmad=false under nvcc, -ffp-contract=off under hipcc), no table indexed by data, no long double,
// no library calls. Every operation is correctly rounded, so host and device give the same bits.
// reference/NUMERICS.md ("moesim's transcendental functions") gives each algorithm to the bit.
//
// Accuracy, measured against glibc's long double functions (tests/traces/test_fmath_*.cpp with
// MOESIM_FMATH_SCALE=10, tools/fmath_accuracy.cpp), as the largest error in ulps of the exact
// value; figures in each comment. The float versions are (float)f((double)x).
#include <cstdint>

#include "hd.hpp"

namespace moesim::fmath {

namespace detail {

MOESIM_HD inline double pow2(int e) {  // 2^e for e in [-1022, 1023], from its bits
  return hd::from_bits(static_cast<std::uint64_t>(e + 1023) << 52);
}
MOESIM_HD inline double quiet_nan() { return hd::from_bits(std::uint64_t{0x7ff8000000000000}); }
MOESIM_HD inline double infinity() { return hd::from_bits(std::uint64_t{0x7ff0000000000000}); }

// A double-double: hi + lo with |lo| at most about half an ulp of hi.
struct DD {
  double hi, lo;
};

// s + e == a + b exactly, any a and b (Knuth's TwoSum).
MOESIM_HD inline DD two_sum(double a, double b) {
  const double s = a + b;
  const double bb = s - a;
  const double e = (a - (s - bb)) + (b - bb);
  return {s, e};
}
// s + e == a + b exactly when |a| >= |b| (or a == 0) (Dekker's Fast2Sum).
MOESIM_HD inline DD fast_two_sum(double a, double b) {
  const double s = a + b;
  const double e = b - (s - a);
  return {s, e};
}
// a == hi + lo, each with at most 26 significant bits (Veltkamp's split; |a| < 2^996).
MOESIM_HD inline DD split(double a) {
  const double c = 134217729.0 * a;  // 2^27 + 1
  const double hi = c - (c - a);
  return {hi, a - hi};
}
// p + e == a * b exactly, without FMA (Dekker's two-product), barring underflow.
MOESIM_HD inline DD two_prod(double a, double b) {
  const double p = a * b;
  const DD as = split(a), bs = split(b);
  const double e = (((as.hi * bs.hi - p) + as.hi * bs.lo) + as.lo * bs.hi) + as.lo * bs.lo;
  return {p, e};
}

// exp(x) = 2^k * (1 + s + sl) for |x| <= 746: k = nearest integer to x / ln2, |s| < 0.42,
// |sl| about an ulp of s at most. Cody-Waite reduction r = x - k ln2 (ln2_hi has 21
// trailing zero bits, so k * ln2_hi is exact for |k| < 2^21 and x - k * ln2_hi is exact), then
// Taylor to degree 14 in r, |r| <= ln2 / 2 (truncation below 2^-63), with r^2 / 2 exact.
struct ExpParts {
  int k;
  double s, sl;
};
MOESIM_HD inline ExpParts exp_parts(double x) {
  constexpr double log2e = 0x1.71547652b82fep+0;
  constexpr double shifter = 0x1.8p52;  // adding and subtracting it rounds to an integer
  constexpr double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
  const double kd = (x * log2e + shifter) - shifter;
  const double hi = x - kd * ln2_hi;  // exact
  const double lo = kd * ln2_lo;
  const double r = hi - lo;
  const double rc = (hi - r) - lo;  // r + rc is the reduced argument to about 2^-75
  // Q(r) = sum_{n=3}^{14} r^(n-3) / n!, Horner from the top.
  double q = 0x1.93974a8c07c9dp-37;  // 1/14!
  q = 0x1.6124613a86d09p-33 + r * q;  // 1/13!
  q = 0x1.1eed8eff8d898p-29 + r * q;  // 1/12!
  q = 0x1.ae64567f544e4p-26 + r * q;  // 1/11!
  q = 0x1.27e4fb7789f5cp-22 + r * q;  // 1/10!
  q = 0x1.71de3a556c734p-19 + r * q;  // 1/9!
  q = 0x1.a01a01a01a01ap-16 + r * q;  // 1/8!
  q = 0x1.a01a01a01a01ap-13 + r * q;  // 1/7!
  q = 0x1.6c16c16c16c17p-10 + r * q;  // 1/6!
  q = 0x1.1111111111111p-7 + r * q;   // 1/5!
  q = 0x1.5555555555555p-5 + r * q;   // 1/4!
  q = 0x1.5555555555555p-3 + r * q;   // 1/3!
  // exp(r + rc) = 1 + r + r^2/2 + (r^3 Q(r) + rc (1 + r)), r^2 = z exactly
  const DD z = two_prod(r, r);
  const double tail = ((0.5 * z.lo) + (r * z.hi) * q) + (rc + r * rc);
  const DD u = fast_two_sum(0.5 * z.hi, tail);
  const DD s = fast_two_sum(r, u.hi);
  return {static_cast<int>(kd), s.hi, s.lo + u.lo};
}

// y * 2^k in two exact-or-rounding-once steps (k in [-1100, 1100]): y * 2^(k/2) is exact for
// y in [0.5, 2], and the second product rounds once (to a subnormal, zero or inf included).
MOESIM_HD inline double scale(double y, int k) {
  const int k1 = k / 2;  // truncated toward zero
  return (y * pow2(k1)) * pow2(k - k1);
}

// expm1(z) as a double-double, |z| <= 746 (used by tanh for z in [2^-27, 44]). k == 0 (|z| below
// about ln2 / 2): the Taylor part s + sl of exp_parts itself, no cancellation. Otherwise
// 2^k (1 + s + sl) - 1 with the subtraction of 1 done exactly (TwoSum).
MOESIM_HD inline DD expm1_dd(double z) {
  const ExpParts p = exp_parts(z);
  if (p.k == 0) return fast_two_sum(p.s, p.sl);
  const DD h = fast_two_sum(1.0, p.s);
  const double f = pow2(p.k);
  const DD u = two_sum(h.hi * f, -1.0);
  return fast_two_sum(u.hi, u.lo + (h.lo + p.sl) * f);
}

}  // namespace detail

// exp(x). NaN passes, x > 710 gives +inf, x < -746 gives +0; otherwise
// 2^k * (1 + s + sl) rounded once to a double (exp_parts), scaled by 2^k in two steps so that
// subnormal and overflowing results round once. Measured: 0.532 ulp (subnormal results, rounded
// twice: 0.753 ulp).
MOESIM_HD inline double exp(double x) {
  if (x != x) return x;
  if (x > 710.0) return detail::infinity();
  if (x < -746.0) return 0.0;
  const detail::ExpParts p = detail::exp_parts(x);
  const detail::DD h = detail::fast_two_sum(1.0, p.s);
  return detail::scale(h.hi + (h.lo + p.sl), p.k);
}

// Natural logarithm. x = m 2^e with m in [sqrt(1/2), sqrt(2)) (subnormals scaled by 2^54 first);
// log m = 2 atanh(s), s = (m - 1) / (m + 1) as a double-double (exact m - 1, TwoSum for m + 1,
// the division's remainder by two-product), |s| < 0.1716, series 2 s + 2 s^3/3 + ... + 2 s^23/23
// (truncation below 2^-65); then e ln2_hi + 2 s_hi by TwoSum plus the low parts.
// log(+-0) = -inf, log(x < 0) = NaN, NaN passes, log(+inf) = +inf. Measured: 0.541 ulp.
MOESIM_HD inline double log(double x) {
  if (x != x) return x;
  if (x == 0.0) return -detail::infinity();
  if (x < 0.0) return detail::quiet_nan();
  if (x == detail::infinity()) return x;
  int e = 0;
  if (x < 0x1p-1022) {
    x = x * 0x1p54;  // exact
    e = -54;
  }
  const std::uint64_t b = hd::bits(x);
  const std::uint64_t frac = b & 0x000fffffffffffffULL;
  e += static_cast<int>(b >> 52) - 1023;
  double m;
  if (frac >= 0x6a09e667f3bcdULL) {  // 1.frac >= 0x1.6a09e667f3bcdp0 (sqrt 2 rounded up): halve
    m = hd::from_bits(frac | (std::uint64_t{1022} << 52));
    e += 1;
  } else {
    m = hd::from_bits(frac | (std::uint64_t{1023} << 52));
  }
  const double f = m - 1.0;  // exact (Sterbenz)
  const detail::DD d = detail::two_sum(m, 1.0);
  const double sh = f / d.hi;
  const detail::DD p = detail::two_prod(sh, d.hi);
  const double sl = (((f - p.hi) - p.lo) - sh * d.lo) / d.hi;  // f - sh * d.hi is exact
  const double u = sh * sh;
  // P(u) = sum_{n=1}^{11} 2/(2n+1) u^(n-1), Horner from the top.
  double q = 0x1.642c8590b2164p-4;  // 2/23
  q = 0x1.8618618618618p-4 + u * q;  // 2/21
  q = 0x1.af286bca1af28p-4 + u * q;  // 2/19
  q = 0x1.e1e1e1e1e1e1ep-4 + u * q;  // 2/17
  q = 0x1.1111111111111p-3 + u * q;  // 2/15
  q = 0x1.3b13b13b13b14p-3 + u * q;  // 2/13
  q = 0x1.745d1745d1746p-3 + u * q;  // 2/11
  q = 0x1.c71c71c71c71cp-3 + u * q;  // 2/9
  q = 0x1.2492492492492p-2 + u * q;  // 2/7
  q = 0x1.999999999999ap-2 + u * q;  // 2/5
  q = 0x1.5555555555555p-1 + u * q;  // 2/3
  const double tail = (sh * u) * q;
  constexpr double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
  const double ed = static_cast<double>(e);
  const detail::DD h = detail::two_sum(ed * ln2_hi, 2.0 * sh);  // ed * ln2_hi exact
  return h.hi + (h.lo + (((ed * ln2_lo) + 2.0 * sl) + tail));
}

// cos(2 pi u) for finite u (NaN and +-inf give NaN). Exact reduction: a = |u| minus its nearest
// integer, made non-negative (a in [0, 1/2]; |u| >= 2^52 is an integer: a = 0), q = nearest
// integer to 4a (ties to even), r = a - q/4 in [-1/8, 1/8] (exact in binary); theta = 2 pi r as
// a double-double (two-product with 2pi_hi plus r * 2pi_lo), |theta| <= pi/4. q = 0: cos theta,
// q = 1: -sin theta, q = 2: -cos theta, by Taylor polynomials to degree 20 (cos) and 19 (sin).
// Measured: 0.767 ulp (exactly +-1 and +-0 at multiples of 1/4: cos_2pi(1/4) = -0).
MOESIM_HD inline double cos_2pi(double u) {
  if (u != u) return u;
  double a = u < 0.0 ? -u : u;
  if (a == detail::infinity()) return detail::quiet_nan();
  if (a >= 0x1p52) {
    a = 0.0;
  } else {
    const double n = (a + 0x1p52) - 0x1p52;  // nearest integer, ties to even
    a = a - n;                               // exact, in [-1/2, 1/2]
    if (a < 0.0) a = -a;
  }
  const double q = (4.0 * a + 0x1p52) - 0x1p52;  // 0, 1 or 2
  const double r = a - 0.25 * q;                 // exact, in [-1/8, 1/8]
  constexpr double two_pi_hi = 0x1.921fb54442d18p+2, two_pi_lo = 0x1.1a62633145c07p-52;
  const detail::DD tp = detail::two_prod(r, two_pi_hi);
  const detail::DD t = detail::fast_two_sum(tp.hi, tp.lo + r * two_pi_lo);
  if (q == 1.0) {
    // sin t = t + t^3 S(t^2) + t_lo (1 - t^2/2), S(z) = sum_{n=1}^{9} (-1)^n z^(n-1) / (2n+1)!
    const double z = t.hi * t.hi;
    double s = -0x1.2f49b46814157p-57;  // -1/19!
    s = 0x1.952c77030ad4ap-49 + z * s;   //  1/17!
    s = -0x1.ae7f3e733b81fp-41 + z * s;  // -1/15!
    s = 0x1.6124613a86d09p-33 + z * s;   //  1/13!
    s = -0x1.ae64567f544e4p-26 + z * s;  // -1/11!
    s = 0x1.71de3a556c734p-19 + z * s;   //  1/9!
    s = -0x1.a01a01a01a01ap-13 + z * s;  // -1/7!
    s = 0x1.1111111111111p-7 + z * s;    //  1/5!
    s = -0x1.5555555555555p-3 + z * s;   // -1/3!
    const double v = t.hi + (t.lo * (1.0 - 0.5 * z) + (t.hi * z) * s);
    return -v;
  }
  // cos t = 1 - t_hi^2/2 - t_hi t_lo + t_hi^4 C(t_hi^2), t_hi^2 exact by two-product,
  // C(z) = sum_{n=2}^{10} (-1)^n z^(n-2) / (2n)!
  const detail::DD z = detail::two_prod(t.hi, t.hi);
  double c = 0x1.e542ba4020225p-62;    //  1/20!
  c = -0x1.6827863b97d97p-53 + z.hi * c;  // -1/18!
  c = 0x1.ae7f3e733b81fp-45 + z.hi * c;   //  1/16!
  c = -0x1.93974a8c07c9dp-37 + z.hi * c;  // -1/14!
  c = 0x1.1eed8eff8d898p-29 + z.hi * c;   //  1/12!
  c = -0x1.27e4fb7789f5cp-22 + z.hi * c;  // -1/10!
  c = 0x1.a01a01a01a01ap-16 + z.hi * c;   //  1/8!
  c = -0x1.6c16c16c16c17p-10 + z.hi * c;  // -1/6!
  c = 0x1.5555555555555p-5 + z.hi * c;    //  1/4!
  const detail::DD w = detail::fast_two_sum(1.0, -0.5 * z.hi);
  const double v = w.hi + ((w.lo - (0.5 * z.lo + t.hi * t.lo)) + (z.hi * z.hi) * c);
  return q == 0.0 ? v : -v;
}

// tanh(x), odd. NaN passes, |x| < 2^-28 returns x, |x| > 22 gives +-1. Otherwise, with
// E = expm1(2|x|) as a double-double (detail::expm1_dd), tanh|x| = E / (E + 2): the denominator
// by TwoSum, the quotient q = E_hi / D_hi corrected by the division's remainder (two-product)
// and the low parts: q + ((E_hi - q D_hi) + E_lo - q D_lo) / D_hi. Measured: 0.596 ulp (worst
// near |x| = ln2/4, where expm1 switches to 2^k e - 1).
MOESIM_HD inline double tanh(double x) {
  if (x != x) return x;
  const double a = x < 0.0 ? -x : x;
  if (a < 0x1p-28) return x;
  if (a > 22.0) return x < 0.0 ? -1.0 : 1.0;
  const detail::DD e = detail::expm1_dd(2.0 * a);
  detail::DD d = detail::two_sum(e.hi, 2.0);
  d.lo = d.lo + e.lo;
  const double q = e.hi / d.hi;
  const detail::DD m = detail::two_prod(q, d.hi);
  const double rem = (((e.hi - m.hi) - m.lo) + e.lo) - q * d.lo;  // e.hi - q * d.hi is exact
  const double t = q + rem / d.hi;
  return x < 0.0 ? -t : t;
}

// erf(x), odd. NaN and +-0 pass, |x| >= 6 gives +-1, |x| < 2^-28: c x - c x^3/3 (c = 2/sqrt(pi)
// as a double-double) computed on y = x 2^110 and scaled back (subnormal results round twice).
// Otherwise
//   erf(a) = 2/sqrt(pi) exp(-a^2) sum_{n>=0} 2^n a^(2n+1) / (1 3 ... (2n+1)),   a = |x|,
// every part a double-double: a^2 = h + l exactly (two-product), exp(-a^2) = exp(-h)(1 - l)
// from exp_parts, the terms t_n = t_{n-1} (2h + 2l) / (2n+1) (two-product, the division's
// remainder), their sum by TwoSum (all terms positive), stopping after the first term with
// t_n <= 2^-60 sum (at most 101 terms below 6). Measured: 0.540 ulp (subnormal results 0.750).
MOESIM_HD inline double erf(double x) {
  if (x != x) return x;
  const double a = x < 0.0 ? -x : x;
  if (a >= 6.0) return x < 0.0 ? -1.0 : 1.0;
  if (x == 0.0) return x;
  using detail::DD;
  constexpr double c_hi = 0x1.20dd750429b6dp+0, c_lo = 0x1.1ae3a914fed80p-56;  // 2/sqrt(pi)
  if (a < 0x1p-28) {  // c x (1 - x^2/3) at x 2^110, so that the two-product is exact
    const double y = x * 0x1p110;
    const DD p = detail::two_prod(y, c_hi);
    return (p.hi + (p.lo + (y * c_lo - p.hi * ((x * x) * 0x1.5555555555555p-2)))) * 0x1p-110;
  }
  const DD sq = detail::two_prod(a, a);
  // exp(-h) (1 - l) = 2^k ((1 + s) + sl - (1 + s) l)
  const detail::ExpParts p = detail::exp_parts(-sq.hi);
  DD ex = detail::fast_two_sum(1.0, p.s);
  ex.lo = (ex.lo + p.sl) - ex.hi * sq.lo;
  const double f = detail::pow2(p.k);  // k in [-52, 0]: exact scaling
  ex.hi = ex.hi * f;
  ex.lo = ex.lo * f;
  const double vh = 2.0 * sq.hi, vl = 2.0 * sq.lo;
  DD t{a, 0.0}, sum{a, 0.0};
  for (int n = 1; n < 160; ++n) {
    const double d = static_cast<double>(2 * n + 1);
    DD pr = detail::two_prod(t.hi, vh);
    pr.lo = pr.lo + (t.hi * vl + t.lo * vh);
    const double qh = pr.hi / d;
    const DD m = detail::two_prod(qh, d);
    const double ql = (((pr.hi - m.hi) - m.lo) + pr.lo) / d;  // pr.hi - qh * d is exact
    t = detail::fast_two_sum(qh, ql);
    const DD s = detail::two_sum(sum.hi, t.hi);  // early terms exceed the sum
    sum.hi = s.hi;
    sum.lo = sum.lo + (s.lo + t.lo);
    if (t.hi <= 0x1p-60 * sum.hi) break;
  }
  sum = detail::fast_two_sum(sum.hi, sum.lo);
  DD es = detail::two_prod(ex.hi, sum.hi);  // exp(-a^2) * sum
  es.lo = es.lo + (ex.hi * sum.lo + ex.lo * sum.hi);
  es = detail::fast_two_sum(es.hi, es.lo);
  DD r = detail::two_prod(c_hi, es.hi);
  r.lo = r.lo + (c_hi * es.lo + c_lo * es.hi);
  const double v = r.hi + r.lo;
  return x < 0.0 ? -v : v;
}

// Float versions: the double function on the exact double of x, rounded once to float.
// Measured over all 2^32 floats: see reference/NUMERICS.md.
MOESIM_HD inline float expf(float x) { return static_cast<float>(fmath::exp(static_cast<double>(x))); }
MOESIM_HD inline float tanhf(float x) { return static_cast<float>(fmath::tanh(static_cast<double>(x))); }
MOESIM_HD inline float erff(float x) { return static_cast<float>(fmath::erf(static_cast<double>(x))); }

}  // namespace moesim::fmath
