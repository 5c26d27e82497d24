#pragma once
// The activation functions of reference/NUMERICS.md, one implementation for the CPU reference
// and the GPU kernels: the documented expression order in the mode's type, with moesim's own
// exp, erf and tanh (traces/fmath.hpp) in place of the C library's, whose last bits differ
// between glibc and the GPU vendors' math libraries.
#include "fmath.hpp"
#include "hd.hpp"
#include "trace.hpp"

namespace moesim {

namespace detail {
MOESIM_HD inline double act_exp(double x) { return fmath::exp(x); }
MOESIM_HD inline float act_exp(float x) { return fmath::expf(x); }
MOESIM_HD inline double act_erf(double x) { return fmath::erf(x); }
MOESIM_HD inline float act_erf(float x) { return fmath::erff(x); }
MOESIM_HD inline double act_tanh(double x) { return fmath::tanh(x); }
MOESIM_HD inline float act_tanh(float x) { return fmath::tanhf(x); }
}  // namespace detail

// act(x) in T (double in exact mode, float otherwise).
template <class T>
MOESIM_HD inline T apply_activation(Activation a, T x) {
  const T half = T(0.5), one = T(1);
  switch (a) {
    case Activation::silu_gated:
    case Activation::silu: return x / (one + detail::act_exp(-x));
    case Activation::gelu_erf_gated:
    case Activation::gelu_erf: return half * x * (one + detail::act_erf(x * T(0.70710678118654752440)));
    case Activation::gelu_tanh_gated:
    case Activation::gelu_tanh:
      return half * x * (one + detail::act_tanh(T(0.79788456080286535588) * (x + T(0.044715) * x * x * x)));
    case Activation::swiglu_oai: break;  // needs the up value: apply_gated below
  }
  return x;
}

// GPT-OSS's clamped SwiGLU (transformers' GptOssExperts): gate clamped above at limit, up to
// [-limit, limit], glu = gate * sigmoid(gate * alpha), result (up + 1) * glu. A NaN passes the
// clamps unchanged, as torch.clamp lets it.
template <class T>
MOESIM_HD inline T swiglu_oai(T gate, T up, T alpha, T limit) {
  const T one = T(1);
  const T g = gate > limit ? limit : gate;
  const T u = up > limit ? limit : (up < -limit ? -limit : up);
  const T glu = g * (one / (one + detail::act_exp(-(g * alpha))));
  return (u + one) * glu;
}

// The gated expert's h[i] from GEMM1's gate and up values: act(gate) * up, or swiglu_oai.
template <class T>
MOESIM_HD inline T apply_gated(Activation a, T gate, T up, T alpha, T limit) {
  if (a == Activation::swiglu_oai) return swiglu_oai(gate, up, alpha, limit);
  return apply_activation(a, gate) * up;
}

}  // namespace moesim
