#pragma once
// Expert weights generated on the device from a trace's seed spec, bit for bit the CPU's
// streams (traces/expert_weights.hpp): the same counter-based values, the same rounding to the
// weight dtype, then the mode's conversion (bf16 rounding in bf16/fp8 modes), so a seed-only
// trace never generates or uploads weights on the host.
#include <cstdint>

#include "round.hpp"
#include "vendor.hpp"

namespace moesim::gpu {

// w[i] = T(mode_bf16 ? rb(f) : f), f = round_to(float(value_i), dtype), value_i the i-th unit
// value of `stream` (uniform or normal) times stddev.
template <class T>
void generate_tensor(T* w, std::int64_t count, std::uint64_t stream, double stddev, bool normal, hd::Narrow dtype,
                     bool mode_bf16, hipStream_t stream_handle);

}  // namespace moesim::gpu
