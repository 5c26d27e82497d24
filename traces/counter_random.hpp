#pragma once
// The counter-based generator's two scalar functions, shared by the CPU and the GPU kernels:
// every random value is a pure function of (stream, index). random.hpp builds streams on them.
#include <cstdint>

#include "hd.hpp"

namespace moesim {

MOESIM_HD inline std::uint64_t mix64(std::uint64_t z) {  // SplitMix64's finalizer
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits.
MOESIM_HD inline double uniform01(std::uint64_t stream, std::uint64_t index) {
  return static_cast<double>(mix64(stream ^ mix64(index)) >> 11) * 0x1.0p-53;
}

}  // namespace moesim
