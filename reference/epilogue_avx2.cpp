// epilogue.hpp's SiLU-gated epilogue in AVX2, compiled with -mavx2 (no -mfma: nothing here may
// fuse) for this file only and run only where gemm::active_isa() is avx2. Each float lane's
// fmath::expf is computed as the scalar does it, in double, four lanes per vector: the same IEEE
// operations of fmath::exp, exp_parts, two_prod, split, fast_two_sum and scale in the same order,
// the special cases by blends, so every lane has the scalar's bits.
#include <immintrin.h>

#include <algorithm>

namespace moesim::epilogue::avx2 {
namespace {

inline __m256d add(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
inline __m256d sub(__m256d a, __m256d b) { return _mm256_sub_pd(a, b); }
inline __m256d mul(__m256d a, __m256d b) { return _mm256_mul_pd(a, b); }
inline __m256d cst(double v) { return _mm256_set1_pd(v); }

// 2^e from the integer-valued double e in [-1022, 1023]: e + 1.5 * 2^52 + 1023 holds e + 1023 in
// its low bits (exact), which fmath's pow2 shifts into the exponent field.
inline __m256d pow2(__m256d e) {
  return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(add(e, cst(0x1.8p52 + 1023.0))), 52));
}

// fmath::exp, lane by lane.
inline __m256d exp4(__m256d x) {
  constexpr double shifter = 0x1.8p52;
  const __m256d kd = sub(add(mul(x, cst(0x1.71547652b82fep+0)), cst(shifter)), cst(shifter));
  const __m256d hi = sub(x, mul(kd, cst(0x1.62e42fee00000p-1)));
  const __m256d lo = mul(kd, cst(0x1.a39ef35793c76p-33));
  const __m256d r = sub(hi, lo);
  const __m256d rc = sub(sub(hi, r), lo);
  __m256d q = cst(0x1.93974a8c07c9dp-37);
  q = add(cst(0x1.6124613a86d09p-33), mul(r, q));
  q = add(cst(0x1.1eed8eff8d898p-29), mul(r, q));
  q = add(cst(0x1.ae64567f544e4p-26), mul(r, q));
  q = add(cst(0x1.27e4fb7789f5cp-22), mul(r, q));
  q = add(cst(0x1.71de3a556c734p-19), mul(r, q));
  q = add(cst(0x1.a01a01a01a01ap-16), mul(r, q));
  q = add(cst(0x1.a01a01a01a01ap-13), mul(r, q));
  q = add(cst(0x1.6c16c16c16c17p-10), mul(r, q));
  q = add(cst(0x1.1111111111111p-7), mul(r, q));
  q = add(cst(0x1.5555555555555p-5), mul(r, q));
  q = add(cst(0x1.5555555555555p-3), mul(r, q));
  // z = two_prod(r, r): both splits are split(r)
  const __m256d zh = mul(r, r);
  const __m256d c = mul(cst(134217729.0), r);
  const __m256d rh = sub(c, sub(c, r));
  const __m256d rl = sub(r, rh);
  const __m256d zl = add(add(add(sub(mul(rh, rh), zh), mul(rh, rl)), mul(rl, rh)), mul(rl, rl));
  const __m256d tail = add(add(mul(cst(0.5), zl), mul(mul(r, zh), q)), add(rc, mul(r, rc)));
  const __m256d half_zh = mul(cst(0.5), zh);
  const __m256d uh = add(half_zh, tail);  // u = fast_two_sum(0.5 * z.hi, tail)
  const __m256d ul = sub(tail, sub(uh, half_zh));
  const __m256d sh = add(r, uh);  // s = fast_two_sum(r, u.hi)
  const __m256d sl = add(sub(uh, sub(sh, r)), ul);
  const __m256d one = cst(1.0);
  const __m256d hh = add(one, sh);  // h = fast_two_sum(1, s)
  const __m256d hl = sub(sh, sub(hh, one));
  const __m256d y = add(hh, add(hl, sl));
  // scale(y, k): k1 = k / 2 truncated toward zero (exact in double), then 2^k1 and 2^(k - k1)
  const __m256d k1 = _mm256_round_pd(mul(kd, cst(0.5)), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  __m256d v = mul(mul(y, pow2(k1)), pow2(sub(kd, k1)));
  // fmath::exp's special cases: NaN passes, x > 710 gives +inf, x < -746 gives +0
  v = _mm256_blendv_pd(v, _mm256_setzero_pd(), _mm256_cmp_pd(x, cst(-746.0), _CMP_LT_OQ));
  v = _mm256_blendv_pd(v, cst(__builtin_inf()), _mm256_cmp_pd(x, cst(710.0), _CMP_GT_OQ));
  return _mm256_blendv_pd(v, x, _mm256_cmp_pd(x, x, _CMP_UNORD_Q));
}

// fmath::expf: the double exp of each float's exact double, rounded once to float.
inline __m256 expf8(__m256 x) {
  const __m128 lo = _mm256_cvtpd_ps(exp4(_mm256_cvtps_pd(_mm256_castps256_ps128(x))));
  const __m128 hi = _mm256_cvtpd_ps(exp4(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))));
  return _mm256_set_m128(hi, lo);
}

// hd::round_bf16: NaN becomes the quiet NaN of its sign, else add half an ulp (ties to even), truncate.
inline __m256 round_bf16(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000));  // both non-negative
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd),
                                     _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
  const __m256i qnan = _mm256_or_si256(_mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(0x80000000u))),
                                       _mm256_set1_epi32(0x7fc00000));
  return _mm256_castsi256_ps(_mm256_blendv_epi8(r, qnan, nan));
}

// Where `a` is NaN, `a` quieted, else v: the NaN x86 returns when `a` is the first operand and the
// other is NaN too. The compiler orders a commutative operation's operands as it likes; what it
// chose for the scalar code (the test pins it) is written out here.
inline __m256 nan_of(__m256 v, __m256 a) {
  const __m256 quiet = _mm256_or_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x00400000)));
  return _mm256_blendv_ps(v, quiet, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}

template <bool bias, bool bf16>
inline void eight(const float* gate, const float* up, const float* gate_bias, const float* up_bias, float* h) {
  __m256 g = _mm256_loadu_ps(gate), u = _mm256_loadu_ps(up);
  if constexpr (bias) {  // the scalar's sums return gate's and up's NaN
    g = nan_of(_mm256_add_ps(g, _mm256_loadu_ps(gate_bias)), g);
    u = nan_of(_mm256_add_ps(u, _mm256_loadu_ps(up_bias)), u);
  }
  if constexpr (bf16) g = round_bf16(g), u = round_bf16(u);
  const __m256 e = expf8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)));  // expf(-g)
  // The division's order is fixed (g first); the scalar's act * up returns up's NaN.
  __m256 v = nan_of(_mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u), u);
  if constexpr (bf16) v = round_bf16(v);
  _mm256_storeu_ps(h, v);
}

template <bool bias, bool bf16>
void rows(const float* gate, const float* up, const float* gate_bias, const float* up_bias, int n, float* h) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    eight<bias, bf16>(gate + i, up + i, bias ? gate_bias + i : nullptr, bias ? up_bias + i : nullptr, h + i);
  if (i == n) return;
  // The tail through the same lanes, padded with zeros.
  float t[5][8] = {};
  const int m = n - i;
  std::copy(gate + i, gate + n, t[0]);
  std::copy(up + i, up + n, t[1]);
  if constexpr (bias) {
    std::copy(gate_bias + i, gate_bias + n, t[2]);
    std::copy(up_bias + i, up_bias + n, t[3]);
  }
  eight<bias, bf16>(t[0], t[1], t[2], t[3], t[4]);
  std::copy(t[4], t[4] + m, h + i);
}

}  // namespace

void silu_gated(const float* gate, const float* up, const float* gate_bias, const float* up_bias, int n, bool bf16,
                float* h) {
  if (gate_bias) {
    if (bf16) rows<true, true>(gate, up, gate_bias, up_bias, n, h);
    else rows<true, false>(gate, up, gate_bias, up_bias, n, h);
  } else {
    if (bf16) rows<false, true>(gate, up, gate_bias, up_bias, n, h);
    else rows<false, false>(gate, up, gate_bias, up_bias, n, h);
  }
}

void exp(const double* x, int n, double* out) {
  int i = 0;
  for (; i + 4 <= n; i += 4) _mm256_storeu_pd(out + i, exp4(_mm256_loadu_pd(x + i)));
  if (i == n) return;
  double t[4] = {}, r[4];
  std::copy(x + i, x + n, t);
  _mm256_storeu_pd(r, exp4(_mm256_loadu_pd(t)));
  std::copy(r, r + (n - i), out + i);
}

}  // namespace moesim::epilogue::avx2
