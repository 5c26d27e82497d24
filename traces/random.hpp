#pragma once
// Counter-based randomness: every value is a pure function of (seed, stream, index), so any
// expert's weights or any rank's inputs can be generated alone, in any order, on any thread,
// with the same bits.
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "trace.hpp"

namespace moesim {

inline std::uint64_t mix64(std::uint64_t z) {  // SplitMix64's finalizer
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A stream id from a seed and a few integers (tensor kind, layer, expert or rank ...).
inline std::uint64_t stream_of(std::uint64_t seed, std::initializer_list<std::uint64_t> keys) {
  std::uint64_t h = mix64(seed);
  for (auto k : keys) h = mix64(h ^ mix64(k + 0x632be59bd9b4e019ULL));
  return h;
}

// Uniform in [0, 1) with 53 random bits.
inline double uniform01(std::uint64_t stream, std::uint64_t index) {
  return static_cast<double>(mix64(stream ^ mix64(index)) >> 11) * 0x1.0p-53;
}

// Stream keys of the generated tensors (kept stable: traces record only the seed).
enum class TensorKind : std::uint64_t { x = 1, w1 = 2, w2 = 3, shared_w1 = 4, shared_w2 = 5 };

// Fills out[0, n) with unit-variance values of spec.distribution times `stddev`, rounded to
// `dtype` (f32 leaves them as float). Same (spec, stream) gives the same bits.
void fill_generated(float* out, std::size_t n, const GeneratorSpec& spec, std::uint64_t stream, double stddev,
                    DType dtype);

}  // namespace moesim
