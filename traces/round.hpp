#pragma once
// Rounding a float to the narrow formats, round to nearest even: one implementation for the CPU
// and the GPU kernels (the GPU backend must reproduce every rounding point of NUMERICS.md).
// traces/dtype.hpp's round_bf16, round_f16 and round_fp8 are these functions.
#include "hd.hpp"

namespace moesim::hd {

// bf16: the upper 16 bits of the float after adding half an ulp (ties to even). NaN becomes the
// quiet NaN of its sign, as Eigen's bfloat16 does.
MOESIM_HD inline float round_bf16(float v) {
  std::uint32_t u = bits(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return from_bits((u & 0x80000000u) | 0x7fc00000u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return from_bits(u & 0xffff0000u);
}

// A power of two from its exponent, e in [-126, 127].
MOESIM_HD inline float pow2f(int e) { return from_bits(static_cast<std::uint32_t>(e + 127) << 23); }

// Rounds |v| to a binary format with `mant` fraction bits, smallest normal exponent `min_exp`
// (subnormals below it keep its ulp) and largest finite value `max`: past it the result
// saturates to +-max (`saturate`, fp8 as real quantizers clamp) or becomes +-inf (f16). The
// scaling by the ulp is exact (a power of two), and rint by the 1.5 * 2^23 trick is one IEEE add
// and subtract, so every step is exact but the one rounding.
MOESIM_HD inline float round_narrow(float v, int mant, int min_exp, float max, bool saturate) {
  if (v != v) return v;
  const float a = v < 0 ? -v : v;
  if (a >= 0x1p126f) return v < 0 ? (saturate ? -max : -__builtin_inff()) : (saturate ? max : __builtin_inff());
  int e = static_cast<int>((bits(a) >> 23) & 0xffu) - 127;  // floor(log2 a) for normal a
  if (e < min_exp) e = min_exp;
  const float ulp = pow2f(e - mant), inv = pow2f(mant - e);
  const float q = (a * inv + 0x1.8p23f) - 0x1.8p23f;  // IEEE forbids folding this (no fast-math)
  float r = q * ulp;
  if (r > max) r = saturate ? max : __builtin_inff();
  return v < 0 ? -r : r;
}

MOESIM_HD inline float round_f16(float v) { return round_narrow(v, 10, -14, 65504.0f, false); }

// OCP e4m3fn (max 448) or e4m3fnuz (max 240, no negative zero: a result of 0 is +0).
MOESIM_HD inline float round_fp8(float v, bool fnuz) {
  const float r = fnuz ? round_narrow(v, 3, -7, 240.0f, true) : round_narrow(v, 3, -6, 448.0f, true);
  return fnuz && r == 0.0f ? 0.0f : r;
}

// The OCP e4m3fn code of r, a value round_fp8(., false) returns (finite; exactly representable):
// sign, 4 exponent bits of bias 7, 3 fraction bits; below 2^-6 the subnormals, multiples of 2^-9.
MOESIM_HD inline std::uint8_t e4m3_code(float r) {
  const std::uint32_t u = bits(r);
  const std::uint8_t sign = static_cast<std::uint8_t>((u >> 24) & 0x80u);
  const float a = r < 0 ? -r : r;
  if (a < 0x1p-6f) return static_cast<std::uint8_t>(sign | static_cast<std::uint8_t>(a * 0x1p9f));
  const int e = static_cast<int>((u >> 23) & 0xffu) - 127;
  return static_cast<std::uint8_t>(sign | ((e + 7) << 3) | ((u >> 20) & 7u));
}

// A storage format's rounding, for code that picks the format at run time (device kernels).
enum class Narrow : int { none, bf16, f16, e4m3, e4m3fnuz };
MOESIM_HD inline float round_to(float v, Narrow n) {
  switch (n) {
    case Narrow::bf16: return round_bf16(v);
    case Narrow::f16: return round_f16(v);
    case Narrow::e4m3: return round_fp8(v, false);
    case Narrow::e4m3fnuz: return round_fp8(v, true);
    case Narrow::none: break;
  }
  return v;
}

}  // namespace moesim::hd
