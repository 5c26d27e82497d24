#pragma once
// Counter-based randomness: every value is a pure function of (seed, stream, index), so any
// expert's weights or any rank's inputs can be generated alone, in any order, on any thread,
// with the same bits.
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "counter_random.hpp"  // mix64, uniform01
#include "trace.hpp"

namespace moesim {

// A stream id from a seed and a few integers (tensor kind, layer, expert or rank ...).
inline std::uint64_t stream_of(std::uint64_t seed, std::initializer_list<std::uint64_t> keys) {
  std::uint64_t h = mix64(seed);
  for (auto k : keys) h = mix64(h ^ mix64(k + 0x632be59bd9b4e019ULL));
  return h;
}

// Stream keys of the generated tensors (kept stable: traces record only the seed).
enum class TensorKind : std::uint64_t { x = 1, w1 = 2, w2 = 3, shared_w1 = 4, shared_w2 = 5 };

// Fills out[0, n) with unit-variance values of spec.distribution times `stddev`, rounded to
// `dtype` (f32 leaves them as float): element i is generated_value (generated_value.hpp) rounded
// to float, then to dtype. Same (spec, stream) gives the same bits.
// `threads` split the range (a large tensor generated alone, such as a rank's tokens).
void fill_generated(float* out, std::size_t n, const GeneratorSpec& spec, std::uint64_t stream, double stddev,
                    DType dtype, int threads = 1);

}  // namespace moesim
