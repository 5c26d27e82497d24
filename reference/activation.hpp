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
  }
  return x;
}

}  // namespace moesim
