// fmath::log (traces/fmath.hpp) against glibc's logl: every binade of positive doubles
// (subnormals included), arguments near 1 and near the sqrt(2) reduction switch.
#include <doctest/doctest.h>

#include "fmath.hpp"
#include "fmath_check.hpp"

using namespace fmath_check;
namespace fm = moesim::fmath;

TEST_CASE("log: special values") {
  const double inf = INFINITY;
  CHECK(fm::log(0.0) == -inf);
  CHECK(fm::log(-0.0) == -inf);
  CHECK(std::isnan(fm::log(-1.0)));
  CHECK(std::isnan(fm::log(-0x1p-1074)));
  CHECK(std::isnan(fm::log(-inf)));
  CHECK(std::isnan(fm::log(NAN)));
  CHECK(fm::log(inf) == inf);
  CHECK(fm::log(1.0) == 0.0);
  CHECK(fm::log(2.0) == 0x1.62e42fefa39efp-1);  // ln 2, correctly rounded
  CHECK(fm::log(0x1p-1074) == -0x1.74385446d71c3p+9);
}

TEST_CASE("log: within 0.55 ulp on every binade, near 1 and near sqrt(2) times powers of two") {
  std::mt19937_64 rng(3);
  Worst w;
  const auto add = [&](const std::vector<double>& xs) {
    for (double x : xs) w.add(x, ulp_error(fm::log(x), logl(static_cast<long double>(x))));
  };
  add(binades(-1074, 1023, samples(800), false, rng));
  add(uniform(0.5, 2.0, samples(600000), rng));
  add(uniform(1.0 - 0x1p-20, 1.0 + 0x1p-20, samples(200000), rng));
  add(around(1.0, 50000));
  for (double m : {0x1.6a09e667f3bcdp0, 0x1.6a09e667f3bcdp-1, 0x1.6a09e667f3bcdp+700, 0x1.6a09e667f3bcdp-1050})
    add(around(m, 20000));
  add(around(0x1p-1022, 20000));  // the subnormal/normal boundary
  add(around(0x1.fffffffffffffp+1023, 1000));  // up to DBL_MAX (and +inf)
  MESSAGE(w.str());
  CHECK(w.ulps < 0.55);
}
