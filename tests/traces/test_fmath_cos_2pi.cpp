// fmath::cos_2pi (traces/fmath.hpp) against glibc's cosl and sinl of 2 pi r in long double, with
// u reduced exactly to r in [-1/8, 1/8] as cos_2pi does (cos(2 pi u) for large u in long double
// would carry the error of 2 pi times u).
#include <doctest/doctest.h>

#include "fmath.hpp"
#include "fmath_check.hpp"

using namespace fmath_check;
namespace fm = moesim::fmath;

namespace {

long double cos_2pi_ref(double u) {
  const long double two_pi = 6.283185307179586476925286766559005768L;
  long double a = std::fabs(static_cast<long double>(u));
  a = std::fabs(a - std::nearbyint(a));  // exact: a in [0, 1/2]
  const long double q = std::nearbyint(4 * a);
  const long double r = a - q / 4;  // exact
  if (q == 1) return -sinl(two_pi * r);
  if (q == 2) return -cosl(two_pi * r);
  return cosl(two_pi * r);
}

}  // namespace

TEST_CASE("cos_2pi: special values and exact points") {
  CHECK(std::isnan(fm::cos_2pi(NAN)));
  CHECK(std::isnan(fm::cos_2pi(INFINITY)));
  CHECK(std::isnan(fm::cos_2pi(-INFINITY)));
  CHECK(fm::cos_2pi(0.0) == 1.0);
  CHECK(fm::cos_2pi(-0.0) == 1.0);
  CHECK(fm::cos_2pi(0.5) == -1.0);
  CHECK(fm::cos_2pi(1.0) == 1.0);
  CHECK(fm::cos_2pi(0.25) == 0.0);
  CHECK(fm::cos_2pi(-0.75) == 0.0);
  CHECK(fm::cos_2pi(0x1p52 + 1) == 1.0);  // integers
  CHECK(fm::cos_2pi(0x1p60) == 1.0);
  CHECK(fm::cos_2pi(0x1p51 + 0.5) == -1.0);
  CHECK(fm::cos_2pi(0.125) == 0x1.6a09e667f3bcdp-1);  // sqrt(1/2), correctly rounded
  CHECK(fm::cos_2pi(1.0 / 6) == 0x1.0000000000000p-1);
}

TEST_CASE("cos_2pi: within 0.8 ulp on [-2, 2], on every binade and near the quarter points") {
  std::mt19937_64 rng(4);
  Worst w;
  const auto add = [&](const std::vector<double>& xs) {
    for (double u : xs) w.add(u, ulp_error(fm::cos_2pi(u), cos_2pi_ref(u)));
  };
  add(uniform(-2, 2, samples(1000000), rng));
  add(uniform(0, 1, samples(500000), rng));  // Box-Muller's range
  add(binades(-1074, 60, samples(500), true, rng));
  for (double q : {0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1000.25, 0x1p40 + 0.75})
    add(around(q, 5000));
  MESSAGE(w.str());
  CHECK(w.ulps < 0.8);
}
