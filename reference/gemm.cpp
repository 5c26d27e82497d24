#include "gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "cpu_isa.hpp"
#include "dtype.hpp"
#include "error.hpp"

namespace moesim::gemm {

// Each instruction set's kernel (gemm_kernel.hpp compiled in its own file and namespace).
#define MOESIM_GEMM_KERNEL_API(ns)                                                                              \
  namespace ns {                                                                                                \
  template <class T>                                                                                            \
  int panel_width();                                                                                            \
  template <class T>                                                                                            \
  std::size_t scratch_size(std::int64_t n, int k);                                                              \
  template <class T>                                                                                            \
  void multiply(const T* x, std::int64_t n, std::int64_t ldx, const T* wp, int m, int k, T* out, std::int64_t ldo, \
                T* scratch, bool fused);                                                                        \
  }
MOESIM_GEMM_KERNEL_API(sse2)
#if MOESIM_GEMM_AVX2
MOESIM_GEMM_KERNEL_API(avx2)
#endif
#undef MOESIM_GEMM_KERNEL_API

#if MOESIM_GEMM_AVX2
constexpr bool kBuiltAvx2 = true;
#else
constexpr bool kBuiltAvx2 = false;
#endif

bool supported(Isa isa) { return isa == Isa::sse2 || cpu_has_avx2(true, kBuiltAvx2); }

const char* name(Isa isa) { return isa == Isa::avx2 ? "avx2" : "sse2"; }

Isa active_isa() {
  static const Isa chosen = choose_avx2("MOESIM_GEMM_ISA", true, kBuiltAvx2) ? Isa::avx2 : Isa::sse2;
  return chosen;
}

template <class T>
int panel_width(Isa isa) {
#if MOESIM_GEMM_AVX2
  if (isa == Isa::avx2) return avx2::panel_width<T>();
#endif
  return sse2::panel_width<T>();
}

template <class T>
std::size_t scratch_size(std::int64_t n, int k, Isa isa) {
#if MOESIM_GEMM_AVX2
  if (isa == Isa::avx2) return avx2::scratch_size<T>(n, k);
#endif
  return sse2::scratch_size<T>(n, k);
}

template <class T>
void pack(const float* w, int m, int k, bool bf16, std::vector<T>& out, Isa isa) {
  const int P = panel_width<T>(isa);
  const std::int64_t panels = padded(m, P) / P;
  out.assign(static_cast<std::size_t>(panels * k * P), T(0));
  for (std::int64_t p = 0; p < panels; ++p) {
    const int width = static_cast<int>(std::min<std::int64_t>(P, m - p * P));
    T* dst = out.data() + p * k * P;
    const float* src = w + p * P * k;
    for (int d0 = 0; d0 < k; d0 += 16)  // one cache line of each row at a time
      for (int o = 0; o < width; ++o)
        for (int d = d0; d < std::min(k, d0 + 16); ++d) {
          const float v = src[static_cast<std::int64_t>(o) * k + d];
          dst[static_cast<std::int64_t>(d) * P + o] = static_cast<T>(bf16 ? round_bf16(v) : v);
        }
  }
}

template <class T>
void multiply(const T* x, std::int64_t n, std::int64_t ldx, const std::vector<T>& wp, int m, int k, T* out,
              std::int64_t ldo, T* scratch, bool bf16_operands, Isa isa) {
#if MOESIM_GEMM_AVX2
  if (isa == Isa::avx2) return avx2::multiply<T>(x, n, ldx, wp.data(), m, k, out, ldo, scratch, bf16_operands);
#endif
  sse2::multiply<T>(x, n, ldx, wp.data(), m, k, out, ldo, scratch, bf16_operands);
}

template int panel_width<float>(Isa);
template int panel_width<double>(Isa);
template std::size_t scratch_size<float>(std::int64_t, int, Isa);
template std::size_t scratch_size<double>(std::int64_t, int, Isa);
template void pack<float>(const float*, int, int, bool, std::vector<float>&, Isa);
template void pack<double>(const float*, int, int, bool, std::vector<double>&, Isa);
template void multiply<float>(const float*, std::int64_t, std::int64_t, const std::vector<float>&, int, int, float*,
                              std::int64_t, float*, bool, Isa);
template void multiply<double>(const double*, std::int64_t, std::int64_t, const std::vector<double>&, int, int,
                               double*, std::int64_t, double*, bool, Isa);

}  // namespace moesim::gemm
