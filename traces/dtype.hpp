#pragma once
// Element types a trace may hold, and the conversions between them and float.
// bf16 and fp16 go through Eigen's types (round to nearest even); Eigen 3.4 has no fp8,
// so the two e4m3 variants are encoded here from their definitions.
#include <cstdint>
#include <string>
#include <string_view>

#include "round.hpp"

namespace moesim {

enum class DType { f32, f64, bf16, f16, e4m3, e4m3fnuz, i32, i64, u8 };

std::string_view name(DType t);
DType parse_dtype(std::string_view s);  // throws Error on an unknown name
int byte_size(DType t);
bool is_fp8(DType t);

// Largest finite magnitude of an fp8 format: 448 (OCP e4m3fn), 240 (e4m3fnuz).
float fp8_max(DType t);

std::uint16_t float_to_bf16_bits(float v);  // round to nearest even
float bf16_bits_to_float(std::uint16_t b);
// Inline: hot loops of the reference and the simulator round every element they store.
inline float round_bf16(float v) { return hd::round_bf16(v); }
std::uint16_t float_to_f16_bits(float v);
float f16_bits_to_float(std::uint16_t b);
float round_f16(float v);

// Round to nearest even; magnitudes past the format's max saturate to +-max (as the
// quantizers of real stacks clamp before the cast); NaN maps to the format's NaN.
std::uint8_t float_to_fp8_bits(float v, DType t);
float fp8_bits_to_float(std::uint8_t b, DType t);
float round_fp8(float v, DType t);

}  // namespace moesim
