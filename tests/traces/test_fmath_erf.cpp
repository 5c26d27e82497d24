// fmath::erf and fmath::erff (traces/fmath.hpp) against glibc's erfl, every binade of the
// argument and the switch points (2^-28, 6).
#include <doctest/doctest.h>

#include "fmath.hpp"
#include "fmath_check.hpp"

using namespace fmath_check;
namespace fm = moesim::fmath;

TEST_CASE("erf: special values") {
  CHECK(std::isnan(fm::erf(NAN)));
  CHECK(fm::erf(INFINITY) == 1.0);
  CHECK(fm::erf(-INFINITY) == -1.0);
  CHECK(fm::erf(0.0) == 0.0);
  CHECK(std::signbit(fm::erf(-0.0)));
  CHECK(fm::erf(6.0) == 1.0);
  CHECK(fm::erf(-7.0) == -1.0);
  CHECK(fm::erf(5.93) == 1.0);                      // erf(x) rounds to 1 from x = 5.92158719579...
  CHECK(fm::erf(5.92) == 0x1.fffffffffffffp-1);
  CHECK(fm::erf(1.0) == 0x1.af767a741088bp-1);      // correctly rounded
  CHECK(fm::erf(0x1p-1074) == 0x1p-1074);           // 2/sqrt(pi) 2^-1074 rounds to 2^-1074
  CHECK(fm::erf(0x1p-1073) == 0x1p-1073);
}

TEST_CASE("erf: odd, within 0.55 ulp (subnormal results 0.8) on every binade and near the switch points") {
  std::mt19937_64 rng(7);
  Worst w, subnormal;
  const auto add = [&](const std::vector<double>& xs) {
    for (double x : xs) {
      const double y = fm::erf(x);
      REQUIRE(moesim::hd::bits(fm::erf(-x)) == moesim::hd::bits(-y));
      const long double want = erfl(static_cast<long double>(x));
      (std::fabs(want) < 0x1p-1022L ? subnormal : w).add(x, ulp_error(y, want));
    }
  };
  add(binades(-1074, 2, samples(300), true, rng));
  add(uniform(-6.5, 6.5, samples(300000), rng));
  add(uniform(-1, 1, samples(100000), rng));
  for (double t : {0x1p-28, 6.0, 0x1.7afb48dc96627p+2})
    add(around(t, 10000));
  MESSAGE("normal results: " << w.str());
  MESSAGE("subnormal results: " << subnormal.str());
  CHECK(w.ulps < 0.55);
  CHECK(subnormal.ulps < 0.8);
}

TEST_CASE("erff: (float)erf(double x), within 1 ulp of the correctly rounded float") {
  std::mt19937_64 rng(8);
  const std::vector<float> xs = float_samples(-149, 2, samples(2000), -4.5f, 4.5f, samples(400000), rng);
  const WorstFloat w = check_float(xs, fm::erff, fm::erf, [](long double x) { return erfl(x); });
  MESSAGE(w.str());
  CHECK(w.not_double == 0);
  CHECK(w.ulps <= 1);
  CHECK(std::isnan(fm::erff(NAN)));
  CHECK(fm::erff(INFINITY) == 1.0f);
}
