#pragma once
// Functions the CPU and the GPU kernels share: MOESIM_HD marks them host and device when a GPU
// compiler (nvcc, hipcc) reads the header, and is empty for the host compiler, so one
// implementation of each scalar rule serves both backends.
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MOESIM_HD __host__ __device__
#else
#define MOESIM_HD
#endif

namespace moesim::hd {

MOESIM_HD inline std::uint32_t bits(float v) {
  std::uint32_t u;
  __builtin_memcpy(&u, &v, sizeof u);
  return u;
}
MOESIM_HD inline float from_bits(std::uint32_t u) {
  float v;
  __builtin_memcpy(&v, &u, sizeof v);
  return v;
}
MOESIM_HD inline std::uint64_t bits(double v) {
  std::uint64_t u;
  __builtin_memcpy(&u, &v, sizeof u);
  return u;
}
MOESIM_HD inline double from_bits(std::uint64_t u) {
  double v;
  __builtin_memcpy(&v, &u, sizeof v);
  return v;
}

}  // namespace moesim::hd
