#include "gemm.hpp"

#include <algorithm>
#include <cstring>

#include "dtype.hpp"

namespace moesim::gemm {
namespace {

constexpr int kDepthChunk = 256;  // depth per pass: a panel's chunk (12 KB) stays in L1
constexpr int kRowBlock = 128;    // rows per pass: their depth chunk stays in L2
constexpr int kRows = 4;          // rows of one micro-kernel call

template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(16)));
  static constexpr int lanes = static_cast<int>(16 / sizeof(T));
};

template <class T>
inline typename Vec<T>::type splat(T s) {
  if constexpr (Vec<T>::lanes == 4) return typename Vec<T>::type{s, s, s, s};
  else return typename Vec<T>::type{s, s};
}

template <class T>
inline typename Vec<T>::type load(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
inline void store(T* p, typename Vec<T>::type v) {
  std::memcpy(p, &v, sizeof v);
}

// rows x (3 vectors) outputs over depth [0, kc); x is packed [kc][rows]. `first`: the
// accumulators start at 0, else at the partial sums already in c.
template <class T, int rows>
void micro(const T* x, const T* wp, int kc, T* c, std::int64_t ldc, bool first) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes, P = 3 * L;
  V acc[rows][3];
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < 3; ++j) acc[r][j] = first ? V{} : load(c + r * ldc + j * L);
  for (int k = 0; k < kc; ++k) {
    const V w0 = load(wp + k * P), w1 = load(wp + k * P + L), w2 = load(wp + k * P + 2 * L);
    for (int r = 0; r < rows; ++r) {
      const V b = splat(x[k * rows + r]);
      acc[r][0] = acc[r][0] + b * w0;
      acc[r][1] = acc[r][1] + b * w1;
      acc[r][2] = acc[r][2] + b * w2;
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < 3; ++j) store(c + r * ldc + j * L, acc[r][j]);
}

template <class T>
void micro_any(int rows, const T* x, const T* wp, int kc, T* c, std::int64_t ldc, bool first) {
  switch (rows) {
    case 4: micro<T, 4>(x, wp, kc, c, ldc, first); break;
    case 3: micro<T, 3>(x, wp, kc, c, ldc, first); break;
    case 2: micro<T, 2>(x, wp, kc, c, ldc, first); break;
    default: micro<T, 1>(x, wp, kc, c, ldc, first); break;
  }
}

// Copies rows [0, n) x depth [0, kc) of x into groups of kRows rows, each [kc][rows]: the
// micro-kernel then reads its broadcasts from one contiguous stream, whatever x's row stride
// (a power-of-two stride would otherwise map every row to the same cache sets).
template <class T>
void pack_rows(const T* x, std::int64_t n, std::int64_t ldx, int kc, T* out) {
  for (std::int64_t g = 0; g < n; g += kRows) {
    const int rows = static_cast<int>(std::min<std::int64_t>(kRows, n - g));
    T* dst = out + g * kc;
    for (int r = 0; r < rows; ++r) {
      const T* src = x + (g + r) * ldx;
      for (int k = 0; k < kc; ++k) dst[k * rows + r] = src[k];
    }
  }
}

}  // namespace

template <class T>
std::vector<T> pack(const float* w, int m, int k, bool bf16) {
  constexpr int P = panel_width<T>();
  const std::int64_t panels = padded(m, P) / P;
  std::vector<T> out(static_cast<std::size_t>(panels * k * P), T(0));
  for (std::int64_t o = 0; o < m; ++o) {
    T* dst = out.data() + (o / P) * k * P + o % P;
    const float* src = w + o * k;
    for (int d = 0; d < k; ++d) dst[static_cast<std::int64_t>(d) * P] = static_cast<T>(bf16 ? round_bf16(src[d]) : src[d]);
  }
  return out;
}

template <class T>
void multiply(const T* x, std::int64_t n, std::int64_t ldx, const std::vector<T>& wp, int m, int k, T* out,
              std::int64_t ldo) {
  constexpr int P = panel_width<T>();
  const std::int64_t panels = padded(m, P) / P;
  if (k == 0) {  // an empty sum is 0
    for (std::int64_t r = 0; r < n; ++r) std::fill(out + r * ldo, out + r * ldo + panels * P, T(0));
    return;
  }
  std::vector<T> xp(static_cast<std::size_t>(kRowBlock) * kDepthChunk);
  for (int k0 = 0; k0 < k; k0 += kDepthChunk) {
    const int kc = std::min(kDepthChunk, k - k0);
    for (std::int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
      const std::int64_t r1 = std::min(n, r0 + kRowBlock);
      pack_rows(x + r0 * ldx + k0, r1 - r0, ldx, kc, xp.data());
      for (std::int64_t p = 0; p < panels; ++p) {
        const T* w = wp.data() + p * k * P + static_cast<std::int64_t>(k0) * P;
        for (std::int64_t r = r0; r < r1; r += kRows)
          micro_any<T>(static_cast<int>(std::min<std::int64_t>(kRows, r1 - r)), xp.data() + (r - r0) * kc, w, kc,
                       out + r * ldo + p * P, ldo, k0 == 0);
      }
    }
  }
}

template std::vector<float> pack<float>(const float*, int, int, bool);
template std::vector<double> pack<double>(const float*, int, int, bool);
template void multiply<float>(const float*, std::int64_t, std::int64_t, const std::vector<float>&, int, int, float*,
                              std::int64_t);
template void multiply<double>(const double*, std::int64_t, std::int64_t, const std::vector<double>&, int, int,
                               double*, std::int64_t);

}  // namespace moesim::gemm
