#pragma once
// Which of a loop's two builds runs, SSE2 (any x86-64) or AVX2: the CPU's answer unless an
// environment variable (`MOESIM_GEMM_ISA`, `MOESIM_DIFF_ISA`, `MOESIM_COUNT_ISA`) says, which is
// how the tests run both. Every such pair gives the same bits (reference/NUMERICS.md).
namespace moesim {

// True when the CPU has AVX2 (and FMA, when `needs_fma`) and this x86-64 build has the AVX2 loop
// (`built`).
bool cpu_has_avx2(bool needs_fma, bool built = true);

// Decided once per variable by the caller (keep the result in a static): `variable` unset gives
// cpu_has_avx2; "sse2" false; "avx2" true. Throws Error on any other value, and on "avx2" where
// cpu_has_avx2 is false.
bool choose_avx2(const char* variable, bool needs_fma, bool built = true);

}  // namespace moesim
