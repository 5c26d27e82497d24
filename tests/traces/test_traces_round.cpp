// The shared (host and device) narrow-format rounding against independent encoders: Eigen's
// bfloat16 and half, and the fp8 code tables of traces/dtype.cpp, over a stride through every
// float bit pattern (every exponent, both signs, NaN and inf included).
#include <doctest/doctest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstring>

#include "dtype.hpp"
#include "round.hpp"

namespace {

float from(std::uint32_t u) {
  float v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
std::uint32_t bits_of(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || bits_of(a) == bits_of(b); }

constexpr std::uint32_t kStride = 9973;  // prime: every low-bit pattern and exponent is visited

template <class F>
std::uint64_t mismatches(F check) {
  std::uint64_t bad = 0;
  for (std::uint64_t u = 0; u <= 0xffffffffull; u += kStride) bad += !check(from(static_cast<std::uint32_t>(u)));
  return bad;
}

}  // namespace

TEST_CASE("bf16 rounding equals Eigen's bfloat16 bit for bit, NaN signs included") {
  CHECK(mismatches([](float v) {
          return bits_of(moesim::hd::round_bf16(v)) == bits_of(static_cast<float>(Eigen::bfloat16(v)));
        }) == 0);
  // Ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
  CHECK(moesim::hd::round_bf16(1.0f + 0x1p-8f) == 1.0f);
  CHECK(moesim::hd::round_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);
}

TEST_CASE("f16 rounding equals Eigen's half, overflow to inf and subnormals included") {
  CHECK(mismatches([](float v) { return same(moesim::hd::round_f16(v), static_cast<float>(Eigen::half(v))); }) == 0);
  CHECK(moesim::hd::round_f16(65519.0f) == 65504.0f);
  CHECK(std::isinf(moesim::hd::round_f16(65520.0f)));
}

TEST_CASE("fp8 rounding equals the code tables' nearest-even encode for both formats") {
  for (moesim::DType t : {moesim::DType::e4m3, moesim::DType::e4m3fnuz}) {
    CAPTURE(moesim::name(t));
    const bool fnuz = t == moesim::DType::e4m3fnuz;
    CHECK(mismatches([&](float v) {
            const float table = moesim::fp8_bits_to_float(moesim::float_to_fp8_bits(v, t), t);
            return same(moesim::hd::round_fp8(v, fnuz), table);
          }) == 0);
  }
  CHECK(moesim::hd::round_fp8(1000.0f, false) == 448.0f);
  CHECK(moesim::hd::round_fp8(-1000.0f, true) == -240.0f);
  CHECK(!std::signbit(moesim::hd::round_fp8(-1e-9f, true)));  // fnuz has no -0
  CHECK(std::signbit(moesim::hd::round_fp8(-1e-9f, false)));
}
