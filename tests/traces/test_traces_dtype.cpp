// Element conversions against values worked out by hand from the formats' definitions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "dtype.hpp"

using namespace moesim;

namespace {
std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace

TEST_CASE("fp8 e4m3fn: max, saturation, NaN and negative zero") {
  const DType t = DType::e4m3;
  CHECK(fp8_max(t) == 448.0f);
  CHECK(float_to_fp8_bits(448.0f, t) == 0x7e);  // exponent 15, mantissa 6: 1.75 * 2^8
  CHECK(float_to_fp8_bits(464.0f, t) == 0x7e);  // halfway to the NaN code: saturates, never NaN
  CHECK(float_to_fp8_bits(1e6f, t) == 0x7e);
  CHECK(float_to_fp8_bits(-1e6f, t) == 0xfe);
  CHECK(float_to_fp8_bits(std::numeric_limits<float>::infinity(), t) == 0x7e);
  CHECK(float_to_fp8_bits(std::nanf(""), t) == 0x7f);
  CHECK(std::isnan(fp8_bits_to_float(0x7f, t)));
  CHECK(std::isnan(fp8_bits_to_float(0xff, t)));
  CHECK(float_to_fp8_bits(-0.0f, t) == 0x80);
  CHECK(std::signbit(fp8_bits_to_float(0x80, t)));
  CHECK(float_to_fp8_bits(1.0f, t) == 0x38);  // exponent 7 = bias
  CHECK(fp8_bits_to_float(0xb8, t) == -1.0f);
}

TEST_CASE("fp8 e4m3fn: subnormals and ties to even") {
  const DType t = DType::e4m3;
  const float sub = std::ldexp(1.0f, -9);  // smallest subnormal, 2^-6 * 1/8
  CHECK(fp8_bits_to_float(0x01, t) == sub);
  CHECK(fp8_bits_to_float(0x07, t) == 7 * sub);
  CHECK(fp8_bits_to_float(0x08, t) == std::ldexp(1.0f, -6));  // smallest normal
  CHECK(float_to_fp8_bits(0.5f * sub, t) == 0x00);            // tie between 0 and 0x01: even is 0
  CHECK(float_to_fp8_bits(0.51f * sub, t) == 0x01);
  CHECK(float_to_fp8_bits(1.5f * sub, t) == 0x02);            // tie between 0x01 and 0x02
  CHECK(float_to_fp8_bits(2.5f * sub, t) == 0x02);            // tie between 0x02 and 0x03
  CHECK(float_to_fp8_bits(1.0625f, t) == 0x38);               // tie between 1 and 1.125: even 0x38
  CHECK(float_to_fp8_bits(1.1875f, t) == 0x3a);               // tie between 1.125 and 1.25: even 0x3a
  CHECK(float_to_fp8_bits(1.07f, t) == 0x39);
  CHECK(round_fp8(-1.1875f, t) == -1.25f);
  CHECK(float_to_fp8_bits(-0.4f * sub, t) == 0x80);           // rounds to zero, keeps its sign
}

TEST_CASE("fp8 e4m3fnuz: max 240, NaN at 0x80, no negative zero") {
  const DType t = DType::e4m3fnuz;
  CHECK(fp8_max(t) == 240.0f);
  CHECK(float_to_fp8_bits(240.0f, t) == 0x7f);  // exponent 15, mantissa 7: 1.875 * 2^7
  CHECK(float_to_fp8_bits(448.0f, t) == 0x7f);
  CHECK(float_to_fp8_bits(-300.0f, t) == 0xff);
  CHECK(fp8_bits_to_float(0xff, t) == -240.0f);
  CHECK(float_to_fp8_bits(std::nanf(""), t) == 0x80);
  CHECK(std::isnan(fp8_bits_to_float(0x80, t)));
  CHECK(float_to_fp8_bits(-0.0f, t) == 0x00);
  CHECK(float_to_fp8_bits(-1e-9f, t) == 0x00);
  CHECK(float_to_fp8_bits(1.0f, t) == 0x40);  // bias 8
  CHECK(fp8_bits_to_float(0x01, t) == std::ldexp(1.0f, -10));
  CHECK(float_to_fp8_bits(1.5f * std::ldexp(1.0f, -10), t) == 0x02);
  CHECK(float_to_fp8_bits(1.0625f, t) == 0x40);
}

TEST_CASE("fp8 decode then encode is the identity on every finite code") {
  for (DType t : {DType::e4m3, DType::e4m3fnuz})
    for (int b = 0; b < 256; ++b) {
      const float v = fp8_bits_to_float(static_cast<std::uint8_t>(b), t);
      if (std::isnan(v)) continue;
      CAPTURE(b);
      CHECK(float_to_fp8_bits(v, t) == b);
    }
}

TEST_CASE("bf16 rounds to nearest even") {
  CHECK(float_to_bf16_bits(1.0f) == 0x3f80);
  CHECK(float_to_bf16_bits(float_of(0x3f808000)) == 0x3f80);  // halfway, even stays
  CHECK(float_to_bf16_bits(float_of(0x3f808001)) == 0x3f81);  // just above halfway
  CHECK(float_to_bf16_bits(float_of(0x3f818000)) == 0x3f82);  // halfway from odd 0x3f81: up to even
  CHECK(float_to_bf16_bits(float_of(0x3f817fff)) == 0x3f81);
  CHECK(float_to_bf16_bits(-2.0f) == 0xc000);
  CHECK(float_to_bf16_bits(float_of(0x7f7fffff)) == 0x7f80);  // largest float rounds to infinity
  CHECK(std::isnan(bf16_bits_to_float(float_to_bf16_bits(std::nanf("")))));
  CHECK(bits_of(bf16_bits_to_float(0x3f81)) == 0x3f810000u);
  CHECK(round_bf16(257.0f) == 256.0f);  // 8 significant bits: 257 is a tie, 256 is even
  CHECK(round_bf16(259.0f) == 260.0f);
}

TEST_CASE("dtype names parse both ways") {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::e4m3, DType::e4m3fnuz, DType::i32,
                  DType::i64, DType::u8})
    CHECK(parse_dtype(name(t)) == t);
  CHECK(parse_dtype("fp8") == DType::e4m3);
  CHECK(parse_dtype("fp8_fnuz") == DType::e4m3fnuz);
  CHECK_THROWS_WITH(parse_dtype("fp4"), "unknown dtype 'fp4'");
}
