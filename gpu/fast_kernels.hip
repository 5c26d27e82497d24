#include "fast_kernels.hpp"

#include "check.hpp"
#include "round.hpp"

namespace moesim::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;  // bf16 values per 16-byte access

__device__ inline float bf(std::uint16_t b) { return __uint_as_float(static_cast<unsigned>(b) << 16); }
__device__ inline std::uint16_t to_bits(float v) {
  return static_cast<std::uint16_t>(__float_as_uint(hd::round_bf16(v)) >> 16);  // rb(v) is exact in the top half
}

// The activation as fused kernels evaluate it: the device's own exp (ex2.approx), erff and tanhf,
// not moesim's correctly rounded functions; a few float ulps, far inside the bf16 rounding that
// follows (NUMERICS.md, "Fast mode").
__device__ inline float fast_act(Activation a, float x) {
  switch (a) {
    case Activation::silu_gated:
    case Activation::silu: return x / (1.0f + __expf(-x));
    case Activation::gelu_erf_gated:
    case Activation::gelu_erf: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case Activation::gelu_tanh_gated:
    case Activation::gelu_tanh: return 0.5f * x * (1.0f + tanhf(0.79788456080286535588f * (x + 0.044715f * x * x * x)));
    case Activation::swiglu_oai: break;  // refused by the fast layer
  }
  return x;
}

unsigned blocks_for(std::int64_t items) {
  const std::int64_t b = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 0x7fffffff ? 0x7fffffff : b));
}

__global__ void to_bf16_kernel(std::uint16_t* __restrict__ dst, const float* __restrict__ src, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dst[i] = to_bits(src[i]);
}

__global__ void from_bf16_kernel(float* __restrict__ dst, const std::uint16_t* __restrict__ src, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dst[i] = bf(src[i]);
}

// One block per row (grid-strided); 16-byte vectors, four loads in flight before their stores.
__global__ void gather_vec_kernel(uint4* __restrict__ dst, const uint4* __restrict__ src,
                                  const std::int64_t* __restrict__ src_row, std::int64_t rows, int vecs) {
  for (std::int64_t j = blockIdx.x; j < rows; j += gridDim.x) {
    const uint4* s = src + src_row[j] * vecs;
    uint4* d = dst + j * vecs;
    int v = threadIdx.x;
    for (; v + 3 * blockDim.x < vecs; v += 4 * blockDim.x) {
      const uint4 a = s[v], b = s[v + blockDim.x], c = s[v + 2 * blockDim.x], e = s[v + 3 * blockDim.x];
      d[v] = a;
      d[v + blockDim.x] = b;
      d[v + 2 * blockDim.x] = c;
      d[v + 3 * blockDim.x] = e;
    }
    for (; v < vecs; v += blockDim.x) d[v] = s[v];
  }
}

__global__ void gather_kernel(std::uint16_t* __restrict__ dst, const std::uint16_t* __restrict__ src,
                              const std::int64_t* __restrict__ src_row, std::int64_t rows, int hidden) {
  for (std::int64_t j = blockIdx.x; j < rows; j += gridDim.x)
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) dst[j * hidden + c] = src[src_row[j] * hidden + c];
}

__global__ void activate_kernel(std::uint16_t* __restrict__ h, const std::uint16_t* __restrict__ g, std::int64_t ldg,
                                std::int64_t n, int inter, Activation act, bool gated) {
  const std::int64_t total = n * inter;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / inter;
    const int c = static_cast<int>(i - r * inter);
    const std::uint16_t* gr = g + r * ldg;
    float v = fast_act(act, bf(gr[c]));
    if (gated) v = __fmul_rn(v, bf(gr[inter + c]));
    h[i] = to_bits(v);
  }
}

// The same, eight columns per thread through 16-byte accesses (inter and ldg multiples of 8), one
// block per row (grid-strided): no division per element.
__global__ void activate_vec_kernel(std::uint16_t* __restrict__ h, const std::uint16_t* __restrict__ g,
                                    std::int64_t ldg, std::int64_t n, int inter, Activation act, bool gated) {
  const int per_row = inter / kVec;
  for (std::int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const std::uint16_t* gr = g + r * ldg;
    for (int v = threadIdx.x; v < per_row; v += blockDim.x) {
      const int c = v * kVec;
      const uint4 gv = *reinterpret_cast<const uint4*>(gr + c);
      uint4 uv{};
      if (gated) uv = *reinterpret_cast<const uint4*>(gr + inter + c);
      const std::uint16_t* ga = reinterpret_cast<const std::uint16_t*>(&gv);
      const std::uint16_t* ua = reinterpret_cast<const std::uint16_t*>(&uv);
      uint4 out;
      std::uint16_t* o = reinterpret_cast<std::uint16_t*>(&out);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        float x = fast_act(act, bf(ga[e]));
        if (gated) x = __fmul_rn(x, bf(ua[e]));
        o[e] = to_bits(x);
      }
      *reinterpret_cast<uint4*>(h + r * inter + c) = out;
    }
  }
}

// rb, scale, shared: combine_token's steps after the routed sum, on one column of one token.
__device__ inline float finish(float acc, std::int64_t t, int c, const FastCombineSpec& s, std::int64_t tokens) {
  float r = hd::round_bf16(acc);
  if (s.scale != 1.0f) r = hd::round_bf16(__fmul_rn(r, s.scale));
  if (s.num_shared > 0) {
    float sh = 0.0f;
    for (int e = 0; e < s.num_shared; ++e) sh = __fadd_rn(sh, bf(s.shared[(e * tokens + t) * s.hidden + c]));
    sh = hd::round_bf16(sh);
    r = hd::round_bf16(__fadd_rn(r, sh));
  }
  return r;
}

// One block per token (grid-strided), threads across columns: a slot's row is read coalesced.
__global__ void combine_ordered_kernel(float* __restrict__ out, const std::uint16_t* __restrict__ y,
                                       const std::int64_t* __restrict__ slot_row, const float* __restrict__ weights,
                                       std::int64_t tokens, FastCombineSpec s) {
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x)
    for (int c = threadIdx.x; c < s.hidden; c += blockDim.x) {
      float acc = 0.0f;
      for (int k = 0; k < s.top_k; ++k) {
        const std::int64_t j = slot_row[t * s.top_k + k];
        if (j >= 0) acc = __fadd_rn(acc, __fmul_rn(weights[t * s.top_k + k], bf(y[j * s.hidden + c])));
      }
      out[t * s.hidden + c] = finish(acc, t, c, s, tokens);
    }
}

// The same, eight columns per thread: one 16-byte load per slot row, two 16-byte stores. Up to
// kSlotsInFlight slots' loads are issued before the first add, so a token's rows are fetched at
// once; the adds still run in ascending slot order.
constexpr int kSlotsInFlight = 8;
__global__ void combine_ordered_vec_kernel(float* __restrict__ out, const std::uint16_t* __restrict__ y,
                                           const std::int64_t* __restrict__ slot_row, const float* __restrict__ weights,
                                           std::int64_t tokens, FastCombineSpec s) {
  const int vecs = s.hidden / kVec;
  for (std::int64_t t = blockIdx.x; t < tokens; t += gridDim.x)
    for (int v = threadIdx.x; v < vecs; v += blockDim.x) {
      float acc[kVec] = {};
      for (int k0 = 0; k0 < s.top_k; k0 += kSlotsInFlight) {
        uint4 q[kSlotsInFlight];
        float w[kSlotsInFlight];
        bool have[kSlotsInFlight];
#pragma unroll
        for (int i = 0; i < kSlotsInFlight; ++i) {
          const int k = k0 + i;
          const std::int64_t j = k < s.top_k ? slot_row[t * s.top_k + k] : -1;
          have[i] = j >= 0;
          w[i] = have[i] ? weights[t * s.top_k + k] : 0.0f;
          q[i] = have[i] ? *reinterpret_cast<const uint4*>(y + j * s.hidden + v * kVec) : uint4{};
        }
#pragma unroll
        for (int i = 0; i < kSlotsInFlight; ++i) {
          if (!have[i]) continue;  // a -1 slot adds nothing, not even 0 (the contract skips it)
          const std::uint16_t* b = reinterpret_cast<const std::uint16_t*>(&q[i]);
#pragma unroll
          for (int e = 0; e < kVec; ++e) acc[e] = __fadd_rn(acc[e], __fmul_rn(w[i], bf(b[e])));
        }
      }
      float r[kVec];
#pragma unroll
      for (int e = 0; e < kVec; ++e) r[e] = finish(acc[e], t, v * kVec + e, s, tokens);
      float4* o = reinterpret_cast<float4*>(out + t * s.hidden + v * kVec);
      o[0] = make_float4(r[0], r[1], r[2], r[3]);
      o[1] = make_float4(r[4], r[5], r[6], r[7]);
    }
}

__global__ void combine_atomic_kernel(float* __restrict__ acc, const std::uint16_t* __restrict__ y,
                                      const std::int64_t* __restrict__ slot_row, const float* __restrict__ weights,
                                      std::int64_t pairs, int hidden, int top_k) {
  for (std::int64_t p = blockIdx.x; p < pairs; p += gridDim.x) {
    const std::int64_t j = slot_row[p];
    if (j < 0) continue;
    const float w = weights[p];
    float* a = acc + (p / top_k) * hidden;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) atomicAdd(a + c, __fmul_rn(w, bf(y[j * hidden + c])));
  }
}

__global__ void combine_finish_kernel(float* __restrict__ out, const float* __restrict__ acc, std::int64_t tokens,
                                      FastCombineSpec s) {
  const std::int64_t total = tokens * s.hidden;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t t = i / s.hidden;
    out[i] = finish(acc[i], t, static_cast<int>(i - t * s.hidden), s, tokens);
  }
}

unsigned row_blocks(std::int64_t rows) { return static_cast<unsigned>(rows < 65536 ? (rows < 1 ? 1 : rows) : 65536); }

}  // namespace

void to_bf16(std::uint16_t* dst, const float* src, std::int64_t count, hipStream_t stream) {
  if (count == 0) return;
  to_bf16_kernel<<<blocks_for(count < (1 << 24) ? count : (1 << 24)), kThreads, 0, stream>>>(dst, src, count);
  MOESIM_GPU_CHECK_LAUNCH();
}

void from_bf16(float* dst, const std::uint16_t* src, std::int64_t count, hipStream_t stream) {
  if (count == 0) return;
  from_bf16_kernel<<<blocks_for(count < (1 << 24) ? count : (1 << 24)), kThreads, 0, stream>>>(dst, src, count);
  MOESIM_GPU_CHECK_LAUNCH();
}

void gather_rows(std::uint16_t* dst, const std::uint16_t* src, const std::int64_t* src_row, std::int64_t rows,
                 int hidden, hipStream_t stream) {
  if (rows == 0) return;
  const bool aligned = hidden % kVec == 0 && reinterpret_cast<std::uintptr_t>(dst) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(src) % 16 == 0;
  if (aligned)
    gather_vec_kernel<<<row_blocks(rows), 128, 0, stream>>>(reinterpret_cast<uint4*>(dst),
                                                            reinterpret_cast<const uint4*>(src), src_row, rows,
                                                            hidden / kVec);
  else
    gather_kernel<<<row_blocks(rows), 128, 0, stream>>>(dst, src, src_row, rows, hidden);
  MOESIM_GPU_CHECK_LAUNCH();
}

void activate_bf16(std::uint16_t* h, const std::uint16_t* g, std::int64_t ldg, std::int64_t n, int inter,
                   Activation act, hipStream_t stream) {
  if (n * inter == 0) return;
  const bool gated = is_gated(act);
  const bool vec = inter % kVec == 0 && ldg % kVec == 0 && reinterpret_cast<std::uintptr_t>(g) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(h) % 16 == 0;
  if (vec) {
    activate_vec_kernel<<<row_blocks(n), 128, 0, stream>>>(h, g, ldg, n, inter, act, gated);
  } else {
    const std::int64_t items = n * inter;
    activate_kernel<<<blocks_for(items < (1 << 24) ? items : (1 << 24)), kThreads, 0, stream>>>(h, g, ldg, n, inter,
                                                                                              act, gated);
  }
  MOESIM_GPU_CHECK_LAUNCH();
}

void combine_ordered(float* out, const std::uint16_t* y, const std::int64_t* slot_row, const float* weights,
                     std::int64_t tokens, const FastCombineSpec& spec, hipStream_t stream) {
  if (tokens == 0) return;
  const bool vec = spec.hidden % kVec == 0 && reinterpret_cast<std::uintptr_t>(y) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
  if (vec)
    combine_ordered_vec_kernel<<<row_blocks(tokens), 128, 0, stream>>>(out, y, slot_row, weights, tokens, spec);
  else
    combine_ordered_kernel<<<row_blocks(tokens), kThreads, 0, stream>>>(out, y, slot_row, weights, tokens, spec);
  MOESIM_GPU_CHECK_LAUNCH();
}

void combine_atomic(float* acc, const std::uint16_t* y, const std::int64_t* slot_row, const float* weights,
                    std::int64_t tokens, int hidden, int top_k, hipStream_t stream) {
  const std::int64_t pairs = tokens * top_k;
  if (pairs == 0) return;
  combine_atomic_kernel<<<row_blocks(pairs), kThreads, 0, stream>>>(acc, y, slot_row, weights, pairs, hidden, top_k);
  MOESIM_GPU_CHECK_LAUNCH();
}

void combine_finish(float* out, const float* acc, std::int64_t tokens, const FastCombineSpec& spec,
                    hipStream_t stream) {
  const std::int64_t n = tokens * spec.hidden;
  if (n == 0) return;
  combine_finish_kernel<<<blocks_for(n < (1 << 24) ? n : (1 << 24)), kThreads, 0, stream>>>(out, acc, tokens, spec);
  MOESIM_GPU_CHECK_LAUNCH();
}

}  // namespace moesim::gpu
