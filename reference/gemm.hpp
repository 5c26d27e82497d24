#pragma once
// The reference's GEMM: out[r][o] = sum over k of x[r][k] * w[o][k], where every output element
// is ONE accumulator of type T that starts at 0 and adds the products x*w (each rounded to T,
// never fused) for k = 0, 1, ..., K-1 in ascending order. The result of a row therefore does
// not depend on how many rows are computed together, on their values, or on the blocking below
// (partial sums are parked in `out`, which has type T, so splitting the depth loop changes no
// bit). Eigen's GEMM cannot promise that: its depth blocking and micro-kernels depend on the
// matrix sizes and on a row's position in the block.
#include <cstdint>
#include <vector>

namespace moesim::gemm {

// Outputs computed together: three 16-byte vectors (12 floats, 6 doubles). With 4 rows per
// micro-kernel that is 12 accumulators, what 16 SSE registers hold. w is stored as panels
// [ceil(M / P)][K][P], zero-padded.
inline constexpr int kPanelVectors = 3;
template <class T>
constexpr int panel_width() {
  return kPanelVectors * static_cast<int>(16 / sizeof(T));
}

inline std::int64_t padded(std::int64_t m, int p) { return (m + p - 1) / p * p; }

// w: [m, k] row-major into out (its storage reused: fresh pages are slow to fault in).
// bf16: round every value to bf16 first.
template <class T>
void pack(const float* w, int m, int k, bool bf16, std::vector<T>& out);

// Scratch elements multiply() needs (for its packed rows).
template <class T>
std::size_t scratch_size();

// x: [n, k] with row stride ldx; wp: pack()ed [m, k]; out: [n, padded(m)] with row stride ldo,
// columns past m receive zeros' products (i.e. are written but meaningless).
// scratch: scratch_size<T>() elements.
template <class T>
void multiply(const T* x, std::int64_t n, std::int64_t ldx, const std::vector<T>& wp, int m, int k, T* out,
              std::int64_t ldo, T* scratch);

}  // namespace moesim::gemm
