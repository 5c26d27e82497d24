// The reference GEMM's kernel, compiled once per instruction set: gemm_sse2.cpp and
// gemm_avx2.cpp include it inside their own namespace (MOESIM_GEMM_ISA) with their own vector
// width and broadcast. It uses no library templates, only builtins: an inline std:: function
// instantiated here with AVX2 flags could be the copy the linker keeps for SSE2 callers too.
// Every output element is still one accumulator adding x*w for k ascending (gemm.hpp); the
// instruction set only decides how many outputs advance together.
//
// The including file defines, before including it:
//   Vec<T>::type, lanes, splat       its vector of T; how many copies of each x value the
//                                    packed rows hold (what its broadcast reads)
//   broadcast(const T* p)            a vector of *p from a packed x value
//   madd<T, fused>(acc, b, w)        acc + b*w, fused only when `fused` (bf16 operands)
//   kAheadInLoop                     whether the micro-kernel spreads its prefetches over its
//                                    depth steps (struct Ahead), else they go in one burst first
#ifndef MOESIM_GEMM_ISA
#error "define MOESIM_GEMM_ISA and the vector helpers before including gemm_kernel.hpp"
#endif

// The blocking (none of it changes a bit: each output still adds its products for k ascending,
// parking the partial sum in `out` between depth chunks):
//   a row block of x (at most 256 rows) is packed once for the whole depth; its depth chunk
//   (at most 256 x 256 values) is read once per panel from L2;
//   a panel's depth chunk (256 x 24 floats: 24 KB) stays in L1 while every row block's row group
//   passes over it, and the next chunk is prefetched meanwhile (it comes from memory), one slice
//   per row group, spread over the micro-kernel's depth steps (struct Ahead);
//   a panel group's outputs (up to 256 rows x 16 panels: 384 KB) stay in L2 across the whole
//   depth, where sweeping all of `out` per chunk sent the partial sums to L3 from 128 rows up.
constexpr int kDepthChunk = 256;  // depth per pass
constexpr int kRowBlock = 256;    // rows per pass (the reference's whole row chunk)
constexpr int kPanelGroup = 16;   // panels whose outputs advance through the depth together
constexpr int kRows = 4;          // rows of one micro-kernel call
constexpr int kVecs = kPanelVectors;
constexpr int kLine = 64;         // bytes per cache line: prefetch slices are whole lines

inline std::int64_t smaller(std::int64_t a, std::int64_t b) { return a < b ? a : b; }

template <class T>
constexpr int panel() {
  return kVecs * Vec<T>::lanes;
}

template <class T>
inline typename Vec<T>::type load(const T* p) {
  typename Vec<T>::type v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
inline void store(T* p, typename Vec<T>::type v) {
  __builtin_memcpy(p, &v, sizeof v);
}

// What a micro-kernel call prefetches (a hint: no effect on results): from `at`, `step` bytes
// further each depth step. Spread over the call, the next chunk's lines arrive while the FMAs
// run; issued as one burst before each call they held the memory queue at the call's start,
// costing 6% at 64 rows on Zen 4 (3% at 128; nothing at 256, where the slices are small).
struct Ahead {
  const char* at;     // any readable address where there is nothing to fetch (step 0)
  std::int64_t step;
};

// rows x kVecs vectors of outputs over depth [0, kc), kc >= 1; x is packed [kc][rows][splat].
// `first`: the accumulators start at 0, else at the partial sums already in c. A template
// argument, with a loop that runs at least once, so the compiler needs no copies of the
// accumulators for a path around the loop (it spilled all 12 to the stack and back per call).
template <class T, int rows, bool fused, bool first>
void micro(const T* x, const T* wp, int kc, T* c, std::int64_t ldc, Ahead ahead) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes, P = panel<T>(), S = Vec<T>::splat;
  V acc[rows][kVecs];  // unrolled first, so the compiler keeps the array in registers
#pragma GCC unroll 16
  for (int r = 0; r < rows; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) acc[r][j] = first ? V{} : load(c + r * ldc + j * L);
  const T* const end = wp + kc * P;
  do {
    V w[kVecs];
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) w[j] = load(wp + j * L);
#pragma GCC unroll 16
    for (int r = 0; r < rows; ++r) {
      const V b = broadcast(x + r * S);
#pragma GCC unroll 16
      for (int j = 0; j < kVecs; ++j) acc[r][j] = madd<T, fused>(acc[r][j], b, w[j]);
    }
    if constexpr (kAheadInLoop) __builtin_prefetch(ahead.at, 0, 2);
    wp += P, x += rows * S, ahead.at += ahead.step;
  } while (wp != end);
#pragma GCC unroll 16
  for (int r = 0; r < rows; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < kVecs; ++j) store(c + r * ldc + j * L, acc[r][j]);
}

template <class T, bool fused, int rows = kRows>
void micro_any(int n, const T* x, const T* wp, int kc, T* c, std::int64_t ldc, bool first, Ahead ahead) {
  if (n == rows || rows == 1) {
    if (first) return micro<T, rows, fused, true>(x, wp, kc, c, ldc, ahead);
    return micro<T, rows, fused, false>(x, wp, kc, c, ldc, ahead);
  }
  if constexpr (rows > 1) micro_any<T, fused, rows - 1>(n, x, wp, kc, c, ldc, first, ahead);
}

// Copies rows [0, n) x depth [0, kc) of x into groups of kRows rows, each [kc][rows][splat]:
// the micro-kernel then reads its broadcasts from one contiguous stream, whatever x's row
// stride (a power-of-two stride would map every row to the same cache sets). Written in
// order, reading `rows` streams of x.
template <class T>
void pack_rows(const T* x, std::int64_t n, std::int64_t ldx, int kc, T* out) {
  constexpr int S = Vec<T>::splat;
  for (std::int64_t g = 0; g < n; g += kRows) {
    const int rows = static_cast<int>(smaller(kRows, n - g));
    T* dst = out + g * kc * S;
    const T* src = x + g * ldx;
    for (int k = 0; k < kc; ++k)
      for (int r = 0; r < rows; ++r)
        for (int l = 0; l < S; ++l) *dst++ = src[r * ldx + k];
  }
}

// Asks for `bytes` at `p` to be brought into the caches ahead of use (a hint: no effect on results).
inline void prefetch(const char* p, std::int64_t bytes) {
  for (std::int64_t b = 0; b < bytes; b += kLine) __builtin_prefetch(p + b, 0, 2);
}

// A row block packed for the whole depth: chunk by chunk, each [row groups][kc][rows][splat].
template <class T>
std::size_t scratch_elements(std::int64_t n, int k) {
  const std::int64_t rows = (smaller(n, kRowBlock) + kRows - 1) / kRows * kRows;
  return static_cast<std::size_t>(rows * k * Vec<T>::splat);
}

template <class T, bool fused>
void multiply_panels(const T* x, std::int64_t n, std::int64_t ldx, const T* wp, int m, int k, T* out,
                     std::int64_t ldo, T* xp) {
  constexpr int P = panel<T>(), S = Vec<T>::splat;
  const std::int64_t panels = (m + P - 1) / P;
  if (k == 0) {  // an empty sum is 0
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c < panels * P; ++c) out[r * ldo + c] = T(0);
    return;
  }
  // Panel p's depth chunk from k0: [kc][P] contiguous in the packed w.
  const auto chunk = [&](std::int64_t p, int k0) { return wp + p * k * P + static_cast<std::int64_t>(k0) * P; };
  const auto chunk_bytes = [&](int k0) { return smaller(kDepthChunk, k - k0) * P * static_cast<std::int64_t>(sizeof(T)); };
  for (std::int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
    const std::int64_t r1 = smaller(n, r0 + kRowBlock), row_groups = (r1 - r0 + kRows - 1) / kRows;
    const auto packed = [&](int k0) { return xp + row_groups * kRows * k0 * S; };  // depth chunk k0's rows
    for (int k0 = 0; k0 < k; k0 += kDepthChunk)
      pack_rows(x + r0 * ldx + k0, r1 - r0, ldx, static_cast<int>(smaller(kDepthChunk, k - k0)), packed(k0));
    for (std::int64_t p0 = 0; p0 < panels; p0 += kPanelGroup) {
      const std::int64_t p1 = smaller(panels, p0 + kPanelGroup);
      for (int k0 = 0; k0 < k; k0 += kDepthChunk) {
        const int kc = static_cast<int>(smaller(kDepthChunk, k - k0));
        for (std::int64_t p = p0; p < p1; ++p) {
          // The chunk this loop reads next, in slices spread over this panel's row groups.
          const T* next = nullptr;
          std::int64_t bytes = 0;
          if (p + 1 < p1) next = chunk(p + 1, k0), bytes = chunk_bytes(k0);
          else if (k0 + kDepthChunk < k) next = chunk(p0, k0 + kDepthChunk), bytes = chunk_bytes(k0 + kDepthChunk);
          else if (p1 < panels) next = chunk(p1, 0), bytes = chunk_bytes(0);
          const std::int64_t slice = (bytes / row_groups + kLine - 1) / kLine * kLine;
          for (std::int64_t r = r0; r < r1; r += kRows) {
            // This row group's slice, in kc steps rounded up: it may overshoot by under kc bytes,
            // even past the end of wp, which a prefetch may (it never faults).
            const std::int64_t done = (r - r0) / kRows * slice, left = smaller(slice, bytes - done);
            const Ahead ahead = left > 0 ? Ahead{reinterpret_cast<const char*>(next) + done, (left + kc - 1) / kc}
                                         : Ahead{reinterpret_cast<const char*>(chunk(p, k0)), 0};
            if (!kAheadInLoop && left > 0) prefetch(reinterpret_cast<const char*>(next) + done, left);
            const int rows = static_cast<int>(smaller(kRows, r1 - r));
            micro_any<T, fused>(rows, packed(k0) + (r - r0) * kc * S, chunk(p, k0), kc, out + r * ldo + p * P, ldo,
                                k0 == 0, ahead);
          }
        }
      }
    }
  }
}

// What gemm.cpp calls, one set per instruction set.
template <class T>
int panel_width() {
  return panel<T>();
}
template <class T>
std::size_t scratch_size(std::int64_t n, int k) {
  return scratch_elements<T>(n, k);
}
template <class T>
void multiply(const T* x, std::int64_t n, std::int64_t ldx, const T* wp, int m, int k, T* out, std::int64_t ldo,
              T* scratch, bool fused) {
  if (fused)
    multiply_panels<T, true>(x, n, ldx, wp, m, k, out, ldo, scratch);
  else
    multiply_panels<T, false>(x, n, ldx, wp, m, k, out, ldo, scratch);
}

template int panel_width<float>();
template int panel_width<double>();
template std::size_t scratch_size<float>(std::int64_t, int);
template std::size_t scratch_size<double>(std::int64_t, int);
template void multiply<float>(const float*, std::int64_t, std::int64_t, const float*, int, int, float*, std::int64_t,
                              float*, bool);
template void multiply<double>(const double*, std::int64_t, std::int64_t, const double*, int, int, double*,
                               std::int64_t, double*, bool);
