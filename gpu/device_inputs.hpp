#pragma once
// A layer's inputs on the device, shared by the deterministic backend and the fast layer: every
// rank's token rows, and one expert's weights in the mode's precision (stored weights uploaded
// from the host provider and converted there, generated weights made on the device from the
// trace's seed, gpu/weights_gen.hpp).
#include <cstdint>
#include <vector>

#include "buffer.hpp"
#include "expert_backend.hpp"
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
// Each expert row's token as a row of upload_tokens' stacked layout: out[j] = rank_base[rank] +
// token; throws Error naming `who` for a row outside its rank's tokens.
void stacked_rows(const TokenRef* rows, std::int64_t n, const std::vector<std::int64_t>& rank_base, std::int64_t* out,
                  const char* who);

// dst = src on the device (grown to fit), queued on `stream`: the host vector must outlive the copy.
template <class T>
void upload(DeviceBuffer<T>& dst, const T* src, std::size_t n, hipStream_t stream, const char* what) {
  dst.reserve(n, what);
  if (n) MOESIM_GPU_CHECK(hipMemcpyAsync(dst.get(), src, n * sizeof(T), hipMemcpyHostToDevice, stream));
}
template <class T>
void upload(DeviceBuffer<T>& dst, const std::vector<T>& src, hipStream_t stream, const char* what) {
  upload(dst, src.data(), src.size(), stream, what);
}

template <class T>
void load_expert_weights(const Trace& trace, const WeightProvider& weights, int layer_pos, int expert, bool shared,
                         bool round_bf16, T* w1, T* w2, DeviceBuffer<float>& staging, ExpertMatrices& host,
                         hipStream_t stream);

// The fast mode's weights: one expert's rb(w1), rb(w2) as bf16 bit patterns into dst1 and dst2,
// through the float scratch w1f/w2f (the same loader, then rounded on the device).
void load_expert_bf16(const Trace& trace, const WeightProvider& weights, int layer_pos, int expert, bool shared,
                      std::uint16_t* dst1, std::uint16_t* dst2, DeviceBuffer<float>& w1f, DeviceBuffer<float>& w2f,
                      DeviceBuffer<float>& staging, ExpertMatrices& host, hipStream_t stream);

// fp8 numerics' routed weights for the block-scaled GEMM: w1 as e4m3fn codes into dst1 (its
// values must be e4m3fn values: an Error naming the expert otherwise) and rb(w2) as bf16.
void load_expert_fp8(const Trace& trace, const WeightProvider& weights, int layer_pos, int expert, std::uint8_t* dst1,
                     std::uint16_t* dst2, DeviceBuffer<float>& w1f, DeviceBuffer<float>& w2f,
                     DeviceBuffer<float>& staging, ExpertMatrices& host, DeviceBuffer<int>& flag, hipStream_t stream);

}  // namespace moesim::gpu
