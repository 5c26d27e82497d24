// The reference's activations use moesim's exp, erf and tanh (traces/fmath.hpp; the float
// versions in float), in the expression orders of reference/NUMERICS.md, bit for bit.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "../../reference/reference.hpp"
#include "fmath.hpp"
#include "hd.hpp"

using namespace moesim;

namespace {

std::vector<double> arguments() {
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> wide(-30, 30), narrow(-4, 4);
  std::vector<double> v = {0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, -1e-30, 88.0, -88.0, 100.0, -100.0, 800.0, -800.0};
  for (int i = 0; i < 20000; ++i) v.push_back(wide(rng));
  for (int i = 0; i < 20000; ++i) v.push_back(narrow(rng));
  return v;
}

}  // namespace

TEST_CASE("activation_value(float) is the NUMERICS.md expression with fmath's float functions") {
  for (double xd : arguments()) {
    const float x = static_cast<float>(xd);
    CAPTURE(x);
    const float silu = x / (1.0f + fmath::expf(-x));
    const float gelu_erf = 0.5f * x * (1.0f + fmath::erff(x * 0.70710678118654752440f));
    const float gelu_tanh = 0.5f * x * (1.0f + fmath::tanhf(0.79788456080286535588f * (x + 0.044715f * x * x * x)));
    for (Activation a : {Activation::silu, Activation::silu_gated})
      REQUIRE(hd::bits(activation_value(a, x)) == hd::bits(silu));
    for (Activation a : {Activation::gelu_erf, Activation::gelu_erf_gated})
      REQUIRE(hd::bits(activation_value(a, x)) == hd::bits(gelu_erf));
    for (Activation a : {Activation::gelu_tanh, Activation::gelu_tanh_gated})
      REQUIRE(hd::bits(activation_value(a, x)) == hd::bits(gelu_tanh));
  }
}

TEST_CASE("activation_value(double) is the NUMERICS.md expression with fmath's double functions") {
  for (double x : arguments()) {
    CAPTURE(x);
    const double silu = x / (1.0 + fmath::exp(-x));
    const double gelu_erf = 0.5 * x * (1.0 + fmath::erf(x * 0.70710678118654752440));
    const double gelu_tanh = 0.5 * x * (1.0 + fmath::tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
    REQUIRE(hd::bits(activation_value(Activation::silu, x)) == hd::bits(silu));
    REQUIRE(hd::bits(activation_value(Activation::gelu_erf, x)) == hd::bits(gelu_erf));
    REQUIRE(hd::bits(activation_value(Activation::gelu_tanh, x)) == hd::bits(gelu_tanh));
  }
}
