#pragma once
// One generated tensor element before its rounding to the tensor's dtype: the CPU's
// fill_generated (random.hpp) and the GPU's weight generation call this same function, so
// generated weights and inputs have the same bits on both (traces/SCHEMA.md, "/generator").
#include <cmath>
#include <cstdint>

#include "counter_random.hpp"
#include "fmath.hpp"
#include "hd.hpp"

namespace moesim {

// Element `index` of a generated tensor on `stream` with standard deviation `stddev`, as a
// double (fill_generated rounds it to float, then to the tensor's dtype). Evaluated left to right:
// - normal: Box-Muller on the counters 2i and 2i+1 with moesim's log and cos_2pi (fmath.hpp)
//   and the correctly rounded sqrt: stddev * sqrt(-2 log(1 - u1)) * cos_2pi(u2);
// - uniform on [-a, a), a = sqrt(3) stddev: a * (2u - 1), u = uniform01(stream, i).
MOESIM_HD inline double generated_value(std::uint64_t stream, std::uint64_t index, bool normal, double stddev) {
  if (normal) {
    const double u1 = 1.0 - uniform01(stream, 2 * index), u2 = uniform01(stream, 2 * index + 1);
    return stddev * std::sqrt(-2.0 * fmath::log(u1)) * fmath::cos_2pi(u2);
  }
  const double a = std::sqrt(3.0) * stddev;
  return a * (2.0 * uniform01(stream, index) - 1.0);
}

}  // namespace moesim
