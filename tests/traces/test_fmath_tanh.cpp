// fmath::tanh and fmath::tanhf (traces/fmath.hpp) against glibc's tanhl, every binade of the
// argument and the switch points (2^-28, the expm1 Taylor/exp switch near ln2/4, 22).
#include <doctest/doctest.h>

#include "fmath.hpp"
#include "fmath_check.hpp"

using namespace fmath_check;
namespace fm = moesim::fmath;

TEST_CASE("tanh: special values") {
  CHECK(std::isnan(fm::tanh(NAN)));
  CHECK(fm::tanh(INFINITY) == 1.0);
  CHECK(fm::tanh(-INFINITY) == -1.0);
  CHECK(fm::tanh(0.0) == 0.0);
  CHECK(std::signbit(fm::tanh(-0.0)));
  CHECK(fm::tanh(0x1p-1074) == 0x1p-1074);
  CHECK(fm::tanh(-0x1p-30) == -0x1p-30);
  CHECK(fm::tanh(22.0) == 1.0);
  CHECK(fm::tanh(-23.0) == -1.0);
  CHECK(fm::tanh(1.0) == 0x1.85efab514f394p-1);  // correctly rounded
}

TEST_CASE("tanh: odd, within 0.62 ulp on every binade and near the switch points") {
  std::mt19937_64 rng(5);
  Worst w;
  const auto add = [&](const std::vector<double>& xs) {
    for (double x : xs) {
      const double y = fm::tanh(x);
      REQUIRE(moesim::hd::bits(fm::tanh(-x)) == moesim::hd::bits(-y));
      w.add(x, ulp_error(y, tanhl(static_cast<long double>(x))));
    }
  };
  add(binades(-1074, 5, samples(400), true, rng));
  add(uniform(-3, 3, samples(1000000), rng));
  add(uniform(0.15, 0.2, samples(200000), rng));  // expm1(2x): k = 0 below about ln2/4, 2^k e - 1 above
  add(uniform(18, 25, samples(50000), rng));
  for (double t : {0x1p-28, 0x1.62e42fefa39efp-3, 22.0, 19.06})
    add(around(t, 20000));
  MESSAGE(w.str());
  CHECK(w.ulps < 0.62);
}

TEST_CASE("tanhf: (float)tanh(double x), within 1 ulp of the correctly rounded float") {
  std::mt19937_64 rng(6);
  const std::vector<float> xs = float_samples(-149, 5, samples(3000), -10.0f, 10.0f, samples(1000000), rng);
  const WorstFloat w = check_float(xs, fm::tanhf, fm::tanh, [](long double x) { return tanhl(x); });
  MESSAGE(w.str());
  CHECK(w.not_double == 0);
  CHECK(w.ulps <= 1);
  CHECK(std::isnan(fm::tanhf(NAN)));
  CHECK(fm::tanhf(-INFINITY) == -1.0f);
}
