#include "weights_gen.hpp"

#include "check.hpp"
#include "generated_value.hpp"

namespace moesim::gpu {
namespace {

template <class T>
__global__ void generate_kernel(T* __restrict__ w, std::int64_t count, std::uint64_t stream, double stddev,
                                bool normal, hd::Narrow dtype, bool mode_bf16) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    float f = hd::round_to(static_cast<float>(generated_value(stream, static_cast<std::uint64_t>(i), normal, stddev)),
                           dtype);
    if (mode_bf16) f = hd::round_bf16(f);
    w[i] = static_cast<T>(f);
  }
}

}  // namespace

template <class T>
void generate_tensor(T* w, std::int64_t count, std::uint64_t stream, double stddev, bool normal, hd::Narrow dtype,
                     bool mode_bf16, hipStream_t stream_handle) {
  if (count == 0) return;
  constexpr int kThreads = 256;
  const std::int64_t want = (count + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(want < 65536 ? want : 65536);  // grid-stride past that
  generate_kernel<T><<<blocks, kThreads, 0, stream_handle>>>(w, count, stream, stddev, normal, dtype, mode_bf16);
  MOESIM_GPU_CHECK_LAUNCH();
}

template void generate_tensor<float>(float*, std::int64_t, std::uint64_t, double, bool, hd::Narrow, bool, hipStream_t);
template void generate_tensor<double>(double*, std::int64_t, std::uint64_t, double, bool, hd::Narrow, bool,
                                      hipStream_t);

}  // namespace moesim::gpu
