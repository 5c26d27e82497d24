#include "fast_fp8.hpp"

#include "check.hpp"
#include "round.hpp"

namespace moesim::gpu {
namespace {

constexpr int kThreads = 256;
constexpr int kBlock = 128;  // depth per scale: what the block-scaled GEMM takes

__device__ inline float shfl_xor(float v, int lane_mask) {
#if defined(MOESIM_GPU_CUDA)
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
#else
  return __shfl_xor(v, lane_mask);  // within 32 lanes of a 64-wide wave: masks below 32
#endif
}

unsigned blocks_for(std::int64_t items) {
  const std::int64_t cap = std::int64_t(1) << 20, b = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

// One warp per (row, block): 4 values per lane, the amax by shuffles, so a row's bytes are read
// once and in order.
__global__ void quantize_kernel(std::uint8_t* __restrict__ q, float* __restrict__ scales, const float* __restrict__ x,
                                std::int64_t items, int blocks) {
  const int lane = threadIdx.x % 32;
  for (std::int64_t item = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; item < items;
       item += static_cast<std::int64_t>(gridDim.x) * blockDim.x / 32) {
    const float* src = x + item * kBlock + lane * 4;  // rows of whole blocks: item * 128 is the block's start
    float v[4], amax = 0.0f;
    for (int i = 0; i < 4; ++i) {
      v[i] = src[i];
      amax = fmaxf(amax, fabsf(v[i]));
    }
    for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, shfl_xor(amax, o));
    const float s = (amax > 1e-10f ? amax : 1e-10f) / 448.0f;
    std::uint32_t packed = 0;
    for (int i = 0; i < 4; ++i) packed |= static_cast<std::uint32_t>(hd::e4m3_code(hd::round_fp8(v[i] / s, false))) << (8 * i);
    reinterpret_cast<std::uint32_t*>(q + item * kBlock)[lane] = packed;
    if (lane == 0) scales[item] = s;
  }
}

__global__ void gather_scales_kernel(float* __restrict__ dst, const float* __restrict__ src,
                                     const std::int64_t* __restrict__ src_row, const std::int64_t* __restrict__ base,
                                     const std::int64_t* __restrict__ stride, std::int64_t rows, int blocks) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * blocks;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t j = i / blocks;
    const int b = static_cast<int>(i - j * blocks);
    const std::int64_t at = base ? base[j] + b * stride[j] : j + b * rows;
    dst[at] = src[src_row[j] * blocks + b];
  }
}

__global__ void to_e4m3_kernel(std::uint8_t* __restrict__ dst, const float* __restrict__ src, std::int64_t n,
                               int* __restrict__ bad) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float r = hd::round_fp8(src[i], false);
    if (!(r == src[i])) *bad = 1;
    dst[i] = hd::e4m3_code(r);
  }
}

__global__ void fill_kernel(float* __restrict__ dst, float v, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dst[i] = v;
}

}  // namespace

void quantize_fp8(std::uint8_t* q, float* scales, const float* x, std::int64_t rows, int hidden, hipStream_t stream) {
  const std::int64_t items = rows * (hidden / kBlock);
  if (items == 0) return;
  quantize_kernel<<<blocks_for(items * 32), kThreads, 0, stream>>>(q, scales, x, items, hidden / kBlock);
  MOESIM_GPU_CHECK_LAUNCH();
}

void gather_scales(float* dst, const float* src, const std::int64_t* src_row, const std::int64_t* base,
                   const std::int64_t* stride, std::int64_t rows, int blocks, hipStream_t stream) {
  if (rows * blocks == 0) return;
  gather_scales_kernel<<<blocks_for(rows * blocks), kThreads, 0, stream>>>(dst, src, src_row, base, stride, rows,
                                                                           blocks);
  MOESIM_GPU_CHECK_LAUNCH();
}

void to_e4m3(std::uint8_t* dst, const float* src, std::int64_t count, int* bad, hipStream_t stream) {
  if (count == 0) return;
  to_e4m3_kernel<<<blocks_for(count), kThreads, 0, stream>>>(dst, src, count, bad);
  MOESIM_GPU_CHECK_LAUNCH();
}

void fill(float* dst, float v, std::int64_t count, hipStream_t stream) {
  if (count == 0) return;
  fill_kernel<<<blocks_for(count), kThreads, 0, stream>>>(dst, v, count);
  MOESIM_GPU_CHECK_LAUNCH();
}

}  // namespace moesim::gpu
