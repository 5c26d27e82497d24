#include "numerics.hpp"

#include <string>

#include "error.hpp"

namespace moesim {

std::string_view name(Numerics n) {
  switch (n) {
    case Numerics::exact: return "exact";
    case Numerics::fp32: return "fp32";
    case Numerics::bf16: return "bf16";
    case Numerics::fp8: return "fp8";
    case Numerics::hf_bf16: return "hf-bf16";
  }
  return "?";
}

Numerics parse_numerics(std::string_view s) {
  for (Numerics n : {Numerics::exact, Numerics::fp32, Numerics::bf16, Numerics::fp8, Numerics::hf_bf16})
    if (s == name(n)) return n;
  throw Error("unknown numerics '" + std::string(s) + "' (expected exact, fp32, bf16, fp8 or hf-bf16)");
}

DType output_dtype(Numerics n) {
  switch (n) {
    case Numerics::exact: return DType::f64;
    case Numerics::fp32: return DType::f32;
    case Numerics::bf16:
    case Numerics::fp8:
    case Numerics::hf_bf16: return DType::bf16;
  }
  return DType::f64;
}

Numerics default_numerics(DType token_dtype) {
  if (token_dtype == DType::f32) return Numerics::fp32;
  if (is_fp8(token_dtype)) return Numerics::fp8;
  return Numerics::bf16;
}

}  // namespace moesim
