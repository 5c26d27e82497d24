#include "epilogue.hpp"

#include "activation.hpp"
#include "dtype.hpp"
#include "fmath.hpp"

namespace moesim::epilogue {

#if MOESIM_GEMM_AVX2
namespace avx2 {
void silu_gated(const float* gate, const float* up, const float* gate_bias, const float* up_bias, int n, bool bf16,
                float* h);
void exp(const double* x, int n, double* out);
}
#endif

void silu_gated(const float* gate, const float* up, const float* gate_bias, const float* up_bias, int n, bool bf16,
                float* h, gemm::Isa isa) {
#if MOESIM_GEMM_AVX2
  if (isa == gemm::Isa::avx2) return avx2::silu_gated(gate, up, gate_bias, up_bias, n, bf16, h);
#endif
  (void)isa;
  const auto rb = [bf16](float v) { return bf16 ? round_bf16(v) : v; };
  for (int i = 0; i < n; ++i) {
    const float g = rb(gate_bias ? gate[i] + gate_bias[i] : gate[i]);
    const float u = rb(up_bias ? up[i] + up_bias[i] : up[i]);
    h[i] = rb(apply_gated<float>(Activation::silu_gated, g, u, 0.0f, 0.0f));
  }
}

void exp(const double* x, int n, double* out, gemm::Isa isa) {
#if MOESIM_GEMM_AVX2
  if (isa == gemm::Isa::avx2) return avx2::exp(x, n, out);
#endif
  (void)isa;
  for (int i = 0; i < n; ++i) out[i] = fmath::exp(x[i]);
}

}  // namespace moesim::epilogue
