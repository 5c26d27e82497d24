#include "gemm.hpp"

#include <algorithm>
#include <cstring>

#include "dtype.hpp"

namespace moesim::gemm {
namespace {

constexpr int kDepthChunk = 256;  // depth per pass: a panel's chunk (12 KB) stays in L1
constexpr int kRowBlock = 128;    // rows per pass: their depth chunk stays in L2
constexpr int kRows = 4;          // rows of one micro-kernel call
constexpr int kVecs = kPanelVectors;

template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(16)));
  static constexpr int lanes = static_cast<int>(16 / sizeof(T));
};

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

// rows x kVecs vectors of outputs over depth [0, kc); x is packed [kc][rows] with every value
// already splatted across a vector. `first`: the accumulators start at 0, else at the partial
// sums already in c.
template <class T, int rows>
void micro(const T* x, const T* wp, int kc, T* c, std::int64_t ldc, bool first) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes, P = kVecs * L;
  V acc[rows][kVecs];
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < kVecs; ++j) acc[r][j] = first ? V{} : load(c + r * ldc + j * L);
  for (int k = 0; k < kc; ++k) {
    V w[kVecs];
    for (int j = 0; j < kVecs; ++j) w[j] = load(wp + k * P + j * L);
    for (int r = 0; r < rows; ++r) {
      const V b = load(x + (k * rows + r) * L);
      for (int j = 0; j < kVecs; ++j) acc[r][j] = acc[r][j] + b * w[j];
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < kVecs; ++j) store(c + r * ldc + j * L, acc[r][j]);
}

template <class T, int rows = kRows>
void micro_any(int n, const T* x, const T* wp, int kc, T* c, std::int64_t ldc, bool first) {
  if constexpr (rows == 1) {
    micro<T, 1>(x, wp, kc, c, ldc, first);
  } else {
    if (n == rows) return micro<T, rows>(x, wp, kc, c, ldc, first);
    micro_any<T, rows - 1>(n, x, wp, kc, c, ldc, first);
  }
}

// Copies rows [0, n) x depth [0, kc) of x into groups of kRows rows, each [kc][rows][lanes] with
// every value splatted: the micro-kernel then loads its broadcasts from one contiguous stream,
// whatever x's row stride (a power-of-two stride would map every row to the same cache sets).
template <class T>
void pack_rows(const T* x, std::int64_t n, std::int64_t ldx, int kc, T* out) {
  constexpr int L = Vec<T>::lanes;
  for (std::int64_t g = 0; g < n; g += kRows) {
    const int rows = static_cast<int>(std::min<std::int64_t>(kRows, n - g));
    T* dst = out + g * kc * L;
    for (int r = 0; r < rows; ++r) {
      const T* src = x + (g + r) * ldx;
      for (int k = 0; k < kc; ++k)
        for (int l = 0; l < L; ++l) dst[(k * rows + r) * L + l] = src[k];
    }
  }
}

}  // namespace

template <class T>
std::size_t scratch_size() {
  return static_cast<std::size_t>(kRowBlock) * kDepthChunk * Vec<T>::lanes;
}

template <class T>
void pack(const float* w, int m, int k, bool bf16, std::vector<T>& out) {
  constexpr int P = panel_width<T>();
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
              std::int64_t ldo, T* xp) {
  constexpr int P = panel_width<T>();
  const std::int64_t panels = padded(m, P) / P;
  if (k == 0) {  // an empty sum is 0
    for (std::int64_t r = 0; r < n; ++r) std::fill(out + r * ldo, out + r * ldo + panels * P, T(0));
    return;
  }
  for (int k0 = 0; k0 < k; k0 += kDepthChunk) {
    const int kc = std::min(kDepthChunk, k - k0);
    for (std::int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
      const std::int64_t r1 = std::min(n, r0 + kRowBlock);
      pack_rows(x + r0 * ldx + k0, r1 - r0, ldx, kc, xp);
      for (std::int64_t p = 0; p < panels; ++p) {
        const T* w = wp.data() + p * k * P + static_cast<std::int64_t>(k0) * P;
        for (std::int64_t r = r0; r < r1; r += kRows) {
          const int rows = static_cast<int>(std::min<std::int64_t>(kRows, r1 - r));
          micro_any<T>(rows, xp + (r - r0) * kc * Vec<T>::lanes, w, kc, out + r * ldo + p * P, ldo, k0 == 0);
        }
      }
    }
  }
}

template std::size_t scratch_size<float>();
template std::size_t scratch_size<double>();
template void pack<float>(const float*, int, int, bool, std::vector<float>&);
template void pack<double>(const float*, int, int, bool, std::vector<double>&);
template void multiply<float>(const float*, std::int64_t, std::int64_t, const std::vector<float>&, int, int, float*,
                              std::int64_t, float*);
template void multiply<double>(const double*, std::int64_t, std::int64_t, const std::vector<double>&, int, int,
                               double*, std::int64_t, double*);

}  // namespace moesim::gemm
