#pragma once
// A layer's inputs on the device, shared by the deterministic backend and the fast layer: every
// rank's token rows, and one expert's weights in the mode's precision (stored weights uploaded
// from the host provider and converted there, generated weights made on the device from the
// trace's seed, gpu/weights_gen.hpp).
#include <cstdint>
#include <vector>

#include "buffer.hpp"
#include "trace.hpp"
#include "vendor.hpp"
#include "weights.hpp"

namespace moesim::gpu {

// Every rank's x [T_r, H] (and fp8 scales [T_r, H / scale_block]) stacked rank after rank into
// x and scales; rank_base[r] is rank r's first row, rank_base[R] the total. Returns once copied.
void upload_tokens(const Trace& trace, int layer_pos, DeviceBuffer<float>& x, DeviceBuffer<float>& scales,
                   std::vector<std::int64_t>& rank_base, hipStream_t stream);

// w1, w2: device buffers of rows1 * H and H * I elements. round_bf16: the bf16/fp8 modes' rb.
// staging and host are scratch the caller keeps between calls. Returns once the stream is done.
template <class T>
void load_expert_weights(const Trace& trace, const WeightProvider& weights, int layer_pos, int expert, bool shared,
                         bool round_bf16, T* w1, T* w2, DeviceBuffer<float>& staging, ExpertMatrices& host,
                         hipStream_t stream);

}  // namespace moesim::gpu
