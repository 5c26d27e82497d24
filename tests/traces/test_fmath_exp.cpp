// fmath::exp and fmath::expf (traces/fmath.hpp) against glibc's expl, every binade of the
// argument and the overflow, subnormal and underflow thresholds included.
#include <doctest/doctest.h>

#include "fmath.hpp"
#include "fmath_check.hpp"

using namespace fmath_check;
namespace fm = moesim::fmath;

namespace {

void add_exp(Worst& normal, Worst& subnormal, const std::vector<double>& xs) {
  for (double x : xs) {
    const long double want = expl(static_cast<long double>(x));
    (want < 0x1p-1022L ? subnormal : normal).add(x, ulp_error(fm::exp(x), want));
  }
}

}  // namespace

TEST_CASE("exp: special values and thresholds") {
  const double inf = INFINITY;
  CHECK(std::isnan(fm::exp(NAN)));
  CHECK(fm::exp(inf) == inf);
  CHECK(fm::exp(-inf) == 0.0);
  CHECK(fm::exp(0.0) == 1.0);
  CHECK(fm::exp(-0.0) == 1.0);
  CHECK(fm::exp(1.0) == 0x1.5bf0a8b145769p+1);                  // e, correctly rounded
  CHECK(fm::exp(0x1.62e42fefa39efp+9) == 0x1.fffffffffff2ap+1023);  // largest x with a finite exp
  CHECK(fm::exp(0x1.62e42fefa39f0p+9) == inf);
  CHECK(fm::exp(1000.0) == inf);
  CHECK(fm::exp(-0x1.74910d52d3051p+9) == 0x1p-1074);  // above log(2^-1075): the smallest subnormal
  CHECK(fm::exp(-0x1.74910d52d3052p+9) == 0.0);        // below it: rounds to 0
  CHECK(fm::exp(-1000.0) == 0.0);
}

TEST_CASE("exp: within 0.55 ulp for normal results, 0.8 ulp for subnormal ones") {
  std::mt19937_64 rng(1);
  Worst normal, subnormal;
  add_exp(normal, subnormal, uniform(-746, 710, samples(1000000), rng));
  add_exp(normal, subnormal, uniform(-1, 1, samples(200000), rng));
  add_exp(normal, subnormal, binades(-1074, 9, samples(300), true, rng));  // tiny to 2^10, both signs
  for (double t : {0x1.62e42fefa39efp+9, -0x1.6232bdd7abcd2p+9, -0x1.74910d52d3052p+9})
    add_exp(normal, subnormal, around(t, 20000));
  add_exp(normal, subnormal, uniform(-746, -708.3, samples(200000), rng));
  MESSAGE("normal results: " << normal.str());
  MESSAGE("subnormal results: " << subnormal.str());
  CHECK(normal.ulps < 0.55);
  CHECK(subnormal.ulps < 0.8);
}

TEST_CASE("expf: (float)exp(double x), within 1 ulp of the correctly rounded float") {
  std::mt19937_64 rng(2);
  std::vector<float> xs = float_samples(-149, 7, samples(3000), -104.0f, 89.0f, samples(1000000), rng);
  for (float t : {0x1.62e42ep+6f, -0x1.5d589ep+6f, -0x1.9fe368p+6f})  // overflow, subnormal, underflow
    for (int i = -2000; i <= 2000; ++i) xs.push_back(moesim::hd::from_bits(moesim::hd::bits(t) + i));
  const WorstFloat w = check_float(xs, fm::expf, fm::exp, [](long double x) { return expl(x); });
  MESSAGE(w.str());
  CHECK(w.not_double == 0);
  CHECK(w.ulps <= 1);
  CHECK(std::isnan(fm::expf(NAN)));
  CHECK(fm::expf(INFINITY) == INFINITY);
  CHECK(fm::expf(-INFINITY) == 0.0f);
  CHECK(fm::expf(0x1.62e430p+6f) == INFINITY);  // past log(FLT_MAX)
}
