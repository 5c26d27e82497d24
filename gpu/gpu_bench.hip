#include "gpu_bench.hpp"

#include <algorithm>
#include <vector>

#include "blas.hpp"
#include "buffer.hpp"
#include "fast_fp8.hpp"
#include "fast_kernels.hpp"
#include "gemm.hpp"
#include "weights_gen.hpp"

namespace moesim::gpu {
namespace {

constexpr int kChains = 8, kIters = 4096;

// Eight independent chains per thread keep the FMA pipes full; the sum is stored so nothing
// is dead code.
template <class T>
__global__ void fma_kernel(T* out, T a, T b) {
  T c[kChains];
#pragma unroll
  for (int j = 0; j < kChains; ++j) c[j] = static_cast<T>(threadIdx.x + j);
  for (int i = 0; i < kIters; ++i)
#pragma unroll
    for (int j = 0; j < kChains; ++j) c[j] = fma(c[j], a, b);
  T s = 0;
#pragma unroll
  for (int j = 0; j < kChains; ++j) s += c[j];
  out[static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x] = s;
}

class Events {
 public:
  Events() {
    MOESIM_GPU_CHECK(hipEventCreate(&start_));
    MOESIM_GPU_CHECK(hipEventCreate(&stop_));
  }
  ~Events() {
    (void)hipEventDestroy(start_);
    (void)hipEventDestroy(stop_);
  }
  void start() { MOESIM_GPU_CHECK(hipEventRecord(start_, nullptr)); }
  double stop_ms() {
    MOESIM_GPU_CHECK(hipEventRecord(stop_, nullptr));
    MOESIM_GPU_CHECK(hipEventSynchronize(stop_));
    float ms = 0;
    MOESIM_GPU_CHECK(hipEventElapsedTime(&ms, start_, stop_));
    return ms;
  }

 private:
  hipEvent_t start_{}, stop_{};
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The median of `reps` timed launches of fn, in milliseconds, after one untimed warm-up launch.
template <class F>
double median_ms(int reps, F fn) {
  Events ev;
  std::vector<double> ms;
  for (int r = 0; r <= reps; ++r) {
    ev.start();
    fn();
    const double t = ev.stop_ms();
    if (r > 0) ms.push_back(t);
  }
  return median(ms);
}

template <class T>
double fma_peak() {
  int device = 0;
  MOESIM_GPU_CHECK(hipGetDevice(&device));
  hipDeviceProp_t prop;
  MOESIM_GPU_CHECK(hipGetDeviceProperties(&prop, device));
  const int threads = 256, blocks = prop.multiProcessorCount * 8;
  DeviceBuffer<T> out(static_cast<std::size_t>(blocks) * threads, "fma bench output");
  Events ev;
  std::vector<double> ms;
  for (int r = 0; r < 6; ++r) {
    ev.start();
    fma_kernel<T><<<blocks, threads>>>(out.get(), T(0.999), T(0.001));
    MOESIM_GPU_CHECK_LAUNCH();
    const double t = ev.stop_ms();
    if (r > 0) ms.push_back(t);  // the first launch loads the module
  }
  const double flops = 2.0 * blocks * threads * kChains * static_cast<double>(kIters);
  return flops / (median(ms) * 1e-3) * 1e-12;
}

template <class T>
double gemm_rate(std::int64_t n, int m, int k, bool fused, int reps) {
  DeviceBuffer<T> a(static_cast<std::size_t>(n) * k, "bench a"), w(static_cast<std::size_t>(m) * k, "bench w"),
      out(static_cast<std::size_t>(n) * m, "bench out");
  // bf16-valued operands (the fused path's precondition), seeded, never zeros.
  generate_tensor<T>(a.get(), n * k, 1, 1.0, false, hd::Narrow::bf16, true, nullptr);
  generate_tensor<T>(w.get(), static_cast<std::int64_t>(m) * k, 2, 0.05, false, hd::Narrow::bf16, true, nullptr);
  const double ms = median_ms(reps, [&] { gemm_nt<T>(out.get(), m, a.get(), k, w.get(), k, n, m, k, fused, false, nullptr); });
  return 2.0 * static_cast<double>(n) * m * k / (ms * 1e-3) * 1e-12;
}

}  // namespace

double copy_tb_per_s(std::size_t bytes, int reps) {
  DeviceBuffer<unsigned char> a(bytes, "bench copy source"), b(bytes, "bench copy target");
  MOESIM_GPU_CHECK(hipMemsetAsync(a.get(), 1, bytes, nullptr));
  const double ms = median_ms(reps, [&] { MOESIM_GPU_CHECK(hipMemcpyAsync(b.get(), a.get(), bytes, hipMemcpyDeviceToDevice, nullptr)); });
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3) * 1e-12;  // read + written
}

double blas_gemm_tflops(std::int64_t n, int m, int k, int reps) {
  DeviceBuffer<float> f(static_cast<std::size_t>(std::max<std::int64_t>(n, m)) * k, "bench float operand");
  DeviceBuffer<std::uint16_t> a(static_cast<std::size_t>(n) * k, "bench a"), w(static_cast<std::size_t>(m) * k, "bench w"),
      out(static_cast<std::size_t>(n) * m, "bench out");
  generate_tensor<float>(f.get(), n * k, 1, 1.0, false, hd::Narrow::bf16, true, nullptr);
  to_bf16(a.get(), f.get(), n * k, nullptr);
  generate_tensor<float>(f.get(), static_cast<std::int64_t>(m) * k, 2, 0.05, false, hd::Narrow::bf16, true, nullptr);
  to_bf16(w.get(), f.get(), static_cast<std::int64_t>(m) * k, nullptr);
  Blas blas(nullptr);
  const double ms = median_ms(reps, [&] { blas.gemm_nt_bf16(out.get(), a.get(), w.get(), n, m, k); });
  return 2.0 * static_cast<double>(n) * m * k / (ms * 1e-3) * 1e-12;
}

double blas_fp8_gemm_tflops(std::int64_t n, int m, int k, int reps) {
  DeviceBuffer<float> f(static_cast<std::size_t>(std::max<std::int64_t>(n, m)) * k, "bench float operand");
  DeviceBuffer<std::uint8_t> a(static_cast<std::size_t>(n) * k, "bench a"), w(static_cast<std::size_t>(m) * k, "bench w");
  DeviceBuffer<std::uint16_t> out(static_cast<std::size_t>(n) * m, "bench out");
  DeviceBuffer<float> sa(static_cast<std::size_t>(n) * (k / 128), "bench a scales"),
      sw(static_cast<std::size_t>(m) * (k / 128), "bench w scales");
  DeviceBuffer<int> bad(1, "e4m3 check");
  generate_tensor<float>(f.get(), n * k, 1, 1.0, false, hd::Narrow::e4m3, false, nullptr);
  to_e4m3(a.get(), f.get(), n * k, bad.get(), nullptr);
  generate_tensor<float>(f.get(), static_cast<std::int64_t>(m) * k, 2, 1.0, false, hd::Narrow::e4m3, false, nullptr);
  to_e4m3(w.get(), f.get(), static_cast<std::int64_t>(m) * k, bad.get(), nullptr);
  fill(sa.get(), 1.0f / 64, n * (k / 128), nullptr);  // the time does not depend on the scales' values
  fill(sw.get(), 1.0f / 64, static_cast<std::int64_t>(m) * (k / 128), nullptr);
  Blas blas(nullptr);
  const double ms = median_ms(reps, [&] { blas.gemm_nt_fp8(out.get(), a.get(), sa.get(), w.get(), sw.get(), n, m, k); });
  return 2.0 * static_cast<double>(n) * m * k / (ms * 1e-3) * 1e-12;
}

double fma_peak_tflops(bool f64) { return f64 ? fma_peak<double>() : fma_peak<float>(); }

double gemm_tflops(std::int64_t n, int m, int k, bool fused, bool f64, int reps) {
  return f64 ? gemm_rate<double>(n, m, k, fused, reps) : gemm_rate<float>(n, m, k, fused, reps);
}

}  // namespace moesim::gpu
