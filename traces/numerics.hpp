#pragma once
// The numerics modes of the reference model (reference/NUMERICS.md says what each rounds where).
#include <string_view>

#include "dtype.hpp"

namespace moesim {

// exact: float64 everywhere, the golden truth. fp32: float32 inputs and accumulation.
// bf16: a bf16 GPU kernel emulated bit for bit. fp8: bf16 plus fp8 dispatch quantization.
// hf_bf16 ("hf-bf16"): Hugging Face transformers' eager bf16 path, every tensor op rounded to
// bf16 and the token's sum accumulated in bf16 in ascending expert order (NUMERICS.md).
enum class Numerics { exact, fp32, bf16, fp8, hf_bf16 };

std::string_view name(Numerics n);
// Whether the mode's outputs and intermediates are bf16 values (bf16, fp8, hf-bf16).
inline bool rounds_bf16(Numerics n) { return n == Numerics::bf16 || n == Numerics::fp8 || n == Numerics::hf_bf16; }
Numerics parse_numerics(std::string_view s);  // throws Error on an unknown name

// The mode a kernel on these tokens runs: fp32 for f32 tokens, fp8 for fp8 tokens, else bf16.
Numerics default_numerics(DType token_dtype);

// The element type golden/run files store outputs in: f64, f32, bf16, bf16.
DType output_dtype(Numerics n);

// True when values are held as float64 (exact); every other mode computes in float32.
inline bool is_f64(Numerics n) { return n == Numerics::exact; }

}  // namespace moesim
