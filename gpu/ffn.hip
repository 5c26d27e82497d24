#include "ffn.hpp"

#include "activation.hpp"
#include "check.hpp"
#include "round.hpp"

namespace moesim::gpu {
namespace {

template <class T>
__device__ inline T rb(T v) {
  return static_cast<T>(hd::round_bf16(static_cast<float>(v)));
}

// One thread per (row, 1 x scale_block block): the fp8 dispatch quantization needs the block's
// amax, and a block is what one scale covers.
template <class T>
__global__ void input_rows_kernel(T* __restrict__ a, const float* __restrict__ x, const float* __restrict__ scales,
                                  const std::int64_t* __restrict__ row_index, const float* __restrict__ input_weights,
                                  std::int64_t n, InputRowSpec s) {
  const int nb = (s.hidden + s.scale_block - 1) / s.scale_block;
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= n * nb) return;
  const std::int64_t j = item / nb;
  const int b = static_cast<int>(item % nb);
  const int c0 = b * s.scale_block, c1 = min(s.hidden, c0 + s.scale_block);
  const std::int64_t src = row_index[j];
  const float* xr = x + src * s.hidden;
  const T scale = s.fp8_tokens ? static_cast<T>(scales[src * nb + b]) : T(1);
  const bool weighted = input_weights != nullptr;
  const T w = weighted ? static_cast<T>(input_weights[j]) : T(1);
  T* out = a + j * s.hidden;
  float amax = 0.0f;
  for (int c = c0; c < c1; ++c) {
    T v = s.fp8_tokens ? static_cast<T>(xr[c]) * scale : static_cast<T>(xr[c]);
    if (weighted) {
      v = w * v;
      if (s.round_bf16) v = rb(v);
    }
    if (s.final_bf16) v = rb(v);
    out[c] = v;
    const float av = fabsf(static_cast<float>(v));
    amax = av > amax ? av : amax;
  }
  if (s.dispatch_fp8 && (!s.fp8_tokens || weighted)) {
    const float fmax = s.fnuz ? 240.0f : 448.0f;
    const float qs = (amax > 1e-10f ? amax : 1e-10f) / fmax;
    for (int c = c0; c < c1; ++c) {
      const float q = hd::round_fp8(static_cast<float>(out[c]) / qs, s.fnuz);
      out[c] = static_cast<T>(q * qs);
    }
  }
}

template <class T>
__global__ void activate_kernel(T* __restrict__ h, const T* __restrict__ g, std::int64_t ldg, std::int64_t n,
                                int inter, Activation act, bool gated, bool round_bf16) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * inter) return;
  const std::int64_t r = i / inter;
  const int c = static_cast<int>(i % inter);
  const T* gr = g + r * ldg;
  T v = apply_activation<T>(act, gr[c]);
  if (gated) v = v * gr[inter + c];
  h[i] = round_bf16 ? rb(v) : v;
}

template <class T>
__global__ void convert_kernel(T* __restrict__ w, const float* __restrict__ src, std::int64_t count, bool round_bf16) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) w[i] = static_cast<T>(round_bf16 ? hd::round_bf16(src[i]) : src[i]);
}

constexpr int kThreads = 256;
unsigned blocks_for(std::int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }

}  // namespace

template <class T>
void make_input_rows(T* a, const float* x, const float* scales, const std::int64_t* row_index,
                     const float* input_weights, std::int64_t n, const InputRowSpec& spec, hipStream_t stream) {
  const std::int64_t items = n * ((spec.hidden + spec.scale_block - 1) / spec.scale_block);
  if (items == 0) return;
  input_rows_kernel<T><<<blocks_for(items), kThreads, 0, stream>>>(a, x, scales, row_index, input_weights, n, spec);
  MOESIM_GPU_CHECK_LAUNCH();
}

template <class T>
void activate(T* h, const T* g, std::int64_t ldg, std::int64_t n, int inter, Activation act, bool round_bf16,
              hipStream_t stream) {
  if (n * inter == 0) return;
  activate_kernel<T><<<blocks_for(n * inter), kThreads, 0, stream>>>(h, g, ldg, n, inter, act, is_gated(act),
                                                                     round_bf16);
  MOESIM_GPU_CHECK_LAUNCH();
}

template <class T>
void convert_weights(T* w, const float* src, std::int64_t count, bool round_bf16, hipStream_t stream) {
  if (count == 0) return;
  convert_kernel<T><<<blocks_for(count), kThreads, 0, stream>>>(w, src, count, round_bf16);
  MOESIM_GPU_CHECK_LAUNCH();
}

template void make_input_rows<float>(float*, const float*, const float*, const std::int64_t*, const float*,
                                     std::int64_t, const InputRowSpec&, hipStream_t);
template void make_input_rows<double>(double*, const float*, const float*, const std::int64_t*, const float*,
                                      std::int64_t, const InputRowSpec&, hipStream_t);
template void activate<float>(float*, const float*, std::int64_t, std::int64_t, int, Activation, bool, hipStream_t);
template void activate<double>(double*, const double*, std::int64_t, std::int64_t, int, Activation, bool,
                               hipStream_t);
template void convert_weights<float>(float*, const float*, std::int64_t, bool, hipStream_t);
template void convert_weights<double>(double*, const float*, std::int64_t, bool, hipStream_t);

}  // namespace moesim::gpu
