#include "dtype.hpp"
#include "round.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "error.hpp"

namespace moesim {

namespace {
struct DTypeName {
  DType type;
  std::string_view name;
  int bytes;
};
constexpr std::array<DTypeName, 9> kNames{{{DType::f32, "float32", 4},
                                           {DType::f64, "float64", 8},
                                           {DType::bf16, "bfloat16", 2},
                                           {DType::f16, "float16", 2},
                                           {DType::e4m3, "float8_e4m3fn", 1},
                                           {DType::e4m3fnuz, "float8_e4m3fnuz", 1},
                                           {DType::i32, "int32", 4},
                                           {DType::i64, "int64", 8},
                                           {DType::u8, "uint8", 1}}};

const DTypeName& entry(DType t) {
  for (const auto& e : kNames)
    if (e.type == t) return e;
  throw Error("unknown dtype");
}

// Positive finite values of an fp8 format, indexed by code 0..127 (sign bit clear).
struct Fp8Table {
  std::array<float, 128> value{};
  int max_code = 0;  // largest finite positive code
};

Fp8Table make_table(int bias, bool fnuz) {
  Fp8Table t;
  for (int code = 0; code < 128; ++code) {
    int e = code >> 3, m = code & 7;
    float v = e == 0 ? std::ldexp(m / 8.0f, 1 - bias) : std::ldexp(1.0f + m / 8.0f, e - bias);
    t.value[code] = v;
  }
  t.max_code = fnuz ? 127 : 126;  // OCP e4m3fn spends 0x7f on NaN
  return t;
}

const Fp8Table& table(DType t) {
  static const Fp8Table ocp = make_table(7, false);
  static const Fp8Table fnuz = make_table(8, true);
  if (t == DType::e4m3) return ocp;
  if (t == DType::e4m3fnuz) return fnuz;
  throw Error("not an fp8 dtype: " + std::string(name(t)));
}
}  // namespace

std::string_view name(DType t) { return entry(t).name; }
int byte_size(DType t) { return entry(t).bytes; }
bool is_fp8(DType t) { return t == DType::e4m3 || t == DType::e4m3fnuz; }

DType parse_dtype(std::string_view s) {
  for (const auto& e : kNames)
    if (e.name == s) return e.type;
  if (s == "fp32") return DType::f32;
  if (s == "fp64") return DType::f64;
  if (s == "bf16") return DType::bf16;
  if (s == "fp16") return DType::f16;
  if (s == "fp8" || s == "e4m3" || s == "fp8_e4m3") return DType::e4m3;
  if (s == "fp8_fnuz" || s == "e4m3fnuz" || s == "fp8_e4m3fnuz") return DType::e4m3fnuz;
  throw Error("unknown dtype '" + std::string(s) + "'");
}

float fp8_max(DType t) {
  const auto& tb = table(t);
  return tb.value[tb.max_code];
}

std::uint16_t float_to_bf16_bits(float v) { return Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(v)); }
float bf16_bits_to_float(std::uint16_t b) { return static_cast<float>(Eigen::numext::bit_cast<Eigen::bfloat16>(b)); }
std::uint16_t float_to_f16_bits(float v) { return Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(v)); }
float f16_bits_to_float(std::uint16_t b) { return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(b)); }
float round_f16(float v) { return hd::round_f16(v); }

std::uint8_t float_to_fp8_bits(float v, DType t) {
  const auto& tb = table(t);
  const bool fnuz = t == DType::e4m3fnuz;
  if (std::isnan(v)) return fnuz ? 0x80 : 0x7f;
  const std::uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const float a = std::fabs(v);
  int code;
  if (a >= tb.value[tb.max_code]) {
    code = tb.max_code;
  } else {
    // First code whose value is >= a; pick the nearer neighbour, ties to the even code.
    const auto* begin = tb.value.data();
    int hi = static_cast<int>(std::lower_bound(begin, begin + tb.max_code + 1, a) - begin);
    if (hi == 0 || tb.value[hi] == a) {
      code = hi;
    } else {
      int lo = hi - 1;
      float dl = a - tb.value[lo], dh = tb.value[hi] - a;
      code = dl < dh ? lo : dh < dl ? hi : ((lo & 1) == 0 ? lo : hi);
    }
  }
  if (code == 0 && fnuz) return 0x00;  // fnuz has no negative zero; 0x80 is its NaN
  return static_cast<std::uint8_t>(sign | code);
}

float fp8_bits_to_float(std::uint8_t b, DType t) {
  const auto& tb = table(t);
  const int code = b & 0x7f;
  if (t == DType::e4m3fnuz && b == 0x80) return std::numeric_limits<float>::quiet_NaN();
  if (t == DType::e4m3 && code == 0x7f) return std::numeric_limits<float>::quiet_NaN();
  const float v = tb.value[code];
  return (b & 0x80) ? -v : v;
}

float round_fp8(float v, DType t) { return hd::round_fp8(v, t == DType::e4m3fnuz); }

}  // namespace moesim
