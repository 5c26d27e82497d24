#pragma once
// Accuracy checks of traces/fmath.hpp against glibc's long double functions (64-bit significand,
// 11 bits more than double): errors in ulps of the exact value, sample sets that cover every
// binade, and the float checks against the correctly rounded float of the long double value.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "hd.hpp"

namespace fmath_check {

// Sample counts are multiplied by MOESIM_FMATH_SCALE (default 1) for a longer, finer check.
inline int samples(int count) {
  static const int scale = [] {
    const char* s = std::getenv("MOESIM_FMATH_SCALE");
    return s && std::atoi(s) > 0 ? std::atoi(s) : 1;
  }();
  return count * scale;
}

// |got - want| in ulps of want's binade in double (subnormals: 2^-1074); got's class must
// match: NaN for NaN, the same infinity for a want that rounds to it. Mismatches are infinite.
inline long double ulp_error(double got, long double want) {
  const double wd = static_cast<double>(want);
  if (std::isnan(wd) || std::isnan(got)) return std::isnan(wd) && std::isnan(got) ? 0 : INFINITY;
  if (std::isinf(wd) || std::isinf(got)) return wd == got ? 0 : INFINITY;
  if (want == 0) return got == 0 ? 0 : INFINITY;
  int e;
  std::frexp(want, &e);  // |want| in [2^(e-1), 2^e)
  const long double ulp = std::ldexp(1.0L, std::max(e - 53, -1074));
  return std::fabs(static_cast<long double>(got) - want) / ulp;
}

// Distance in floats between got and the correctly rounded float of want (0: correctly rounded).
inline std::int64_t float_ulps(float got, long double want) {
  const float r = static_cast<float>(want);
  if (std::isnan(r) || std::isnan(got)) return std::isnan(r) && std::isnan(got) ? 0 : 1LL << 40;
  const auto ordered = [](float v) {
    const std::uint32_t u = moesim::hd::bits(v);
    const std::int64_t mag = u & 0x7fffffffu;
    return (u >> 31) ? -mag : mag;
  };
  const std::int64_t d = ordered(got) - ordered(r);
  return d < 0 ? -d : d;
}

// The largest error seen, where, and how many arguments.
struct Worst {
  long double ulps = 0;
  double at = 0;
  std::size_t count = 0;
  void add(double x, long double e) {
    ++count;
    if (!(e <= ulps)) ulps = e, at = x;  // NaN errors count as worst
  }
  std::string str() const {
    char b[128];
    std::snprintf(b, sizeof b, "max %.4Lf ulp at x = %a over %zu arguments", ulps, at, count);
    return b;
  }
};

struct WorstFloat {
  std::int64_t ulps = 0;
  std::size_t not_rounded = 0, count = 0;
  std::size_t not_double = 0;  // results other than (float)f((double)x)
  float at = 0;
  void add(float x, std::int64_t d) {
    ++count;
    if (d != 0) ++not_rounded;
    if (d > ulps) ulps = d, at = x;
  }
  std::string str() const {
    char b[160];
    std::snprintf(b, sizeof b, "max %lld ulp at x = %a, %zu of %zu not correctly rounded, %zu not (float)f((double)x)",
                  static_cast<long long>(ulps), static_cast<double>(at), not_rounded, count, not_double);
    return b;
  }
};

// A float version `ours` on xs, against the double version `dbl` (ours(x) must be
// (float)dbl((double)x)) and against the correctly rounded float of the long double `ref`.
template <class Ours, class Double, class Ref>
WorstFloat check_float(const std::vector<float>& xs, Ours ours, Double dbl, Ref ref) {
  WorstFloat w;
  for (float x : xs) {
    const float got = ours(x);
    if (moesim::hd::bits(got) != moesim::hd::bits(static_cast<float>(dbl(static_cast<double>(x))))) ++w.not_double;
    w.add(x, float_ulps(got, ref(static_cast<long double>(x))));
  }
  return w;
}

// `per` random doubles in each binade [2^e, 2^(e+1)) for e in [lo, hi] (lo = -1074: the
// subnormals, one binade per bit position), both signs when `both_signs`.
inline std::vector<double> binades(int lo, int hi, int per, bool both_signs, std::mt19937_64& rng) {
  std::vector<double> v;
  for (int e = lo; e <= hi; ++e)
    for (int i = 0; i < per; ++i) {
      double x;
      if (e < -1022) {  // subnormal: a random integer in [2^(e+1074), 2^(e+1075)) times 2^-1074
        const int b = e + 1074;
        const std::uint64_t m = (std::uint64_t{1} << b) | (b ? rng() >> (64 - b) : 0);
        x = moesim::hd::from_bits(m);
      } else {
        x = moesim::hd::from_bits((static_cast<std::uint64_t>(e + 1023) << 52) | (rng() >> 12));
      }
      v.push_back(both_signs && (rng() & 1) ? -x : x);
    }
  return v;
}

// n random doubles uniform in [lo, hi).
inline std::vector<double> uniform(double lo, double hi, int n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = u(rng);
  return v;
}

// The `n` doubles on each side of x (x included).
inline std::vector<double> around(double x, int n) {
  std::vector<double> v{x};
  double up = x, down = x;
  for (int i = 0; i < n; ++i) {
    up = std::nextafter(up, INFINITY);
    down = std::nextafter(down, -INFINITY);
    v.push_back(up);
    v.push_back(down);
  }
  return v;
}

// Float inputs: `per` random floats in each float binade 2^e, e in [lo, hi] (lo = -149: float
// subnormals), both signs, then `count` uniform in [a, b).
inline std::vector<float> float_samples(int lo, int hi, int per, float a, float b, int count, std::mt19937_64& rng) {
  std::vector<float> v;
  for (int e = lo; e <= hi; ++e)
    for (int i = 0; i < per; ++i) {
      std::uint32_t u;
      if (e < -126) {
        const int b = e + 149;
        u = (1u << b) | (b ? static_cast<std::uint32_t>(rng() >> (64 - b)) : 0u);
      } else {
        u = (static_cast<std::uint32_t>(e + 127) << 23) | static_cast<std::uint32_t>(rng() >> 41);
      }
      if (rng() & 1) u |= 0x80000000u;
      v.push_back(moesim::hd::from_bits(u));
    }
  std::uniform_real_distribution<float> uni(a, b);
  for (int i = 0; i < count; ++i) v.push_back(uni(rng));
  return v;
}

}  // namespace fmath_check
