#pragma once
// The reference's GEMM: out[r][o] = sum over k of x[r][k] * w[o][k], where every output element
// is ONE accumulator of type T that starts at 0 and adds the products x*w (each rounded to T,
// never fused, except where fusing is provably the same: see `bf16_operands`) for k = 0, 1, ...,
// K-1 in ascending order. The result of a row therefore does not depend on how many rows are
// computed together, on their values, on the blocking below (partial sums are parked in `out`,
// which has type T, so splitting the depth loop changes no bit) or on the instruction set that
// ran it. Eigen's GEMM cannot promise that: its depth blocking and micro-kernels depend on the
// matrix sizes and on a row's position in the block.
#include <cstdint>
#include <vector>

namespace moesim::gemm {

// The kernels: 16-byte vectors (SSE2, every x86-64; gemm_sse2.cpp) or 32-byte vectors with FMA
// (AVX2; gemm_avx2.cpp). active_isa() is chosen once per process: MOESIM_GEMM_ISA=sse2|avx2 when
// set (refused when the CPU lacks it), else avx2 where the CPU has AVX2 and FMA.
enum class Isa { sse2, avx2 };
bool supported(Isa isa);
Isa active_isa();
const char* name(Isa isa);

// Outputs computed together: three vectors (12 or 24 floats, 6 or 12 doubles). With 4 rows per
// micro-kernel that is 12 accumulators, what 16 vector registers hold. w is stored as panels
// [ceil(M / P)][K][P], zero-padded, P = panel_width.
inline constexpr int kPanelVectors = 3;
template <class T>
int panel_width(Isa isa = active_isa());

inline std::int64_t padded(std::int64_t m, int p) { return (m + p - 1) / p * p; }

// w: [m, k] row-major into out (its storage reused: fresh pages are slow to fault in), for the
// kernels of `isa`. bf16: round every value to bf16 first.
template <class T>
void pack(const float* w, int m, int k, bool bf16, std::vector<T>& out, Isa isa = active_isa());

// Scratch elements multiply() needs for n rows of depth k (its packed rows: up to 256 at a time,
// over the whole depth; enough for any fewer rows or less depth too).
template <class T>
std::size_t scratch_size(std::int64_t n, int k, Isa isa = active_isa());

// x: [n, k] with row stride ldx; wp: pack()ed [m, k] for the same isa; out: [n, padded(m)] with
// row stride ldo, columns past m receive zeros' products (i.e. are written but meaningless).
// scratch: scratch_size<T>(n, k) elements. bf16_operands: every x and w value is a bf16 value, so each
// product is exact in float and a fused multiply-add gives the unfused bits (used where the CPU
// has one).
template <class T>
void multiply(const T* x, std::int64_t n, std::int64_t ldx, const std::vector<T>& wp, int m, int k, T* out,
              std::int64_t ldo, T* scratch, bool bf16_operands, Isa isa = active_isa());

}  // namespace moesim::gemm
