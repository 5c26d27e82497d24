#include "device_inputs.hpp"

#include <tuple>

#include "error.hpp"
#include "expert_weights.hpp"
#include "fast_fp8.hpp"
#include "fast_kernels.hpp"
#include "ffn.hpp"
#include "weights_gen.hpp"

namespace moesim::gpu {
namespace {

hd::Narrow narrow_of(DType t) {
  switch (t) {
    case DType::bf16: return hd::Narrow::bf16;
    case DType::f16: return hd::Narrow::f16;
    case DType::e4m3: return hd::Narrow::e4m3;
    case DType::e4m3fnuz: return hd::Narrow::e4m3fnuz;
    default: return hd::Narrow::none;
  }
}

}  // namespace

void upload_tokens(const Trace& trace, int layer_pos, DeviceBuffer<float>& x, DeviceBuffer<float>& scales,
                   std::vector<std::int64_t>& rank_base, hipStream_t stream) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers.at(layer_pos);
  const std::size_t H = static_cast<std::size_t>(c.hidden), S = static_cast<std::size_t>(c.scales_per_token());
  const bool fp8 = is_fp8(c.token_dtype);
  rank_base.assign(layer.ranks.size() + 1, 0);
  for (std::size_t r = 0; r < layer.ranks.size(); ++r) {
    const RankInput& in = layer.ranks[r];
    if (in.x.size() != static_cast<std::size_t>(in.num_tokens) * H)
      throw Error(where(trace.path) + "gpu backend: rank " + std::to_string(r) + " tokens not loaded");
    rank_base[r + 1] = rank_base[r] + in.num_tokens;
  }
  const std::size_t rows = static_cast<std::size_t>(rank_base.back());
  x.reserve(rows * H, "the layer's token rows");
  if (fp8) scales.reserve(rows * S, "the layer's token scales");
  for (std::size_t r = 0; r < layer.ranks.size(); ++r) {
    const RankInput& in = layer.ranks[r];
    const std::size_t base = static_cast<std::size_t>(rank_base[r]);
    if (in.num_tokens == 0) continue;
    MOESIM_GPU_CHECK(hipMemcpyAsync(x.get() + base * H, in.x.data(), in.x.size() * sizeof(float),
                                    hipMemcpyHostToDevice, stream));
    if (fp8)
      MOESIM_GPU_CHECK(hipMemcpyAsync(scales.get() + base * S, in.x_scales.data(), in.x_scales.size() * sizeof(float),
                                      hipMemcpyHostToDevice, stream));
  }
  MOESIM_GPU_CHECK(hipStreamSynchronize(stream));
}

void stacked_rows(const TokenRef* rows, std::int64_t n, const std::vector<std::int64_t>& rank_base, std::int64_t* out,
                  const char* who) {
  for (std::int64_t j = 0; j < n; ++j) {
    const TokenRef& ref = rows[j];
    if (ref.rank < 0 || ref.rank + 1 >= static_cast<int>(rank_base.size()) || ref.token < 0 ||
        ref.token >= rank_base[ref.rank + 1] - rank_base[ref.rank])
      throw Error(std::string(who) + ": expert row names a token out of range");
    out[j] = rank_base[ref.rank] + ref.token;
  }
}

template <class T>
void load_expert_weights(const Trace& trace, const WeightProvider& weights, int layer_pos, int expert, bool shared,
                         bool rnd, T* w1, T* w2, DeviceBuffer<float>& staging, ExpertMatrices& host,
                         hipStream_t stream) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers.at(layer_pos);
  const int I = shared ? c.shared_intermediate : c.intermediate;
  const std::size_t n1 = static_cast<std::size_t>(is_gated(c.activation) ? 2 * I : I) * c.hidden;
  const std::size_t n2 = static_cast<std::size_t>(c.hidden) * I;
  if (layer.weights) {  // stored: the host provider's copy, converted on the device
    if (shared)
      weights.shared(layer_pos, expert, host);
    else
      weights.routed(layer_pos, expert, host);
    for (const auto& [dst, src, n] : {std::tuple{w1, host.w1.data(), n1}, std::tuple{w2, host.w2.data(), n2}}) {
      staging.reserve(n, "expert weight staging");
      MOESIM_GPU_CHECK(hipMemcpyAsync(staging.get(), src, n * sizeof(float), hipMemcpyHostToDevice, stream));
      convert_weights(dst, staging.get(), static_cast<std::int64_t>(n), rnd, stream);
      MOESIM_GPU_CHECK(hipStreamSynchronize(stream));  // staging is reused for w2
    }
    return;
  }
  const ExpertStreams s = expert_streams(c, trace.weight_spec, layer.index, expert, shared);
  if (s.w1.count != n1 || s.w2.count != n2) throw Error("gpu backend: generated weight sizes disagree");
  const bool normal = trace.weight_spec.distribution == "normal";
  if (!normal && trace.weight_spec.distribution != "uniform")
    throw Error(where(trace.path, "/generator/weights") + "unknown distribution '" + trace.weight_spec.distribution +
                "'");
  const hd::Narrow dt = narrow_of(c.weight_dtype);
  generate_tensor(w1, static_cast<std::int64_t>(n1), s.w1.stream, s.w1.stddev, normal, dt, rnd, stream);
  generate_tensor(w2, static_cast<std::int64_t>(n2), s.w2.stream, s.w2.stddev, normal, dt, rnd, stream);
  MOESIM_GPU_CHECK(hipStreamSynchronize(stream));
}

template void load_expert_weights<float>(const Trace&, const WeightProvider&, int, int, bool, bool, float*, float*,
                                         DeviceBuffer<float>&, ExpertMatrices&, hipStream_t);
template void load_expert_weights<double>(const Trace&, const WeightProvider&, int, int, bool, bool, double*, double*,
                                          DeviceBuffer<float>&, ExpertMatrices&, hipStream_t);

void load_expert_bf16(const Trace& trace, const WeightProvider& weights, int layer_pos, int expert, bool shared,
                      std::uint16_t* dst1, std::uint16_t* dst2, DeviceBuffer<float>& w1f, DeviceBuffer<float>& w2f,
                      DeviceBuffer<float>& staging, ExpertMatrices& host, hipStream_t stream) {
  const TraceConfig& c = trace.config;
  const int I = shared ? c.shared_intermediate : c.intermediate;
  const std::size_t n1 = static_cast<std::size_t>(is_gated(c.activation) ? 2 * I : I) * c.hidden;
  const std::size_t n2 = static_cast<std::size_t>(c.hidden) * I;
  w1f.reserve(n1, "expert w1 (float)");
  w2f.reserve(n2, "expert w2 (float)");
  load_expert_weights(trace, weights, layer_pos, expert, shared, true, w1f.get(), w2f.get(), staging, host, stream);
  to_bf16(dst1, w1f.get(), static_cast<std::int64_t>(n1), stream);
  to_bf16(dst2, w2f.get(), static_cast<std::int64_t>(n2), stream);
}

void load_expert_fp8(const Trace& trace, const WeightProvider& weights, int layer_pos, int expert, std::uint8_t* dst1,
                     std::uint16_t* dst2, DeviceBuffer<float>& w1f, DeviceBuffer<float>& w2f,
                     DeviceBuffer<float>& staging, ExpertMatrices& host, DeviceBuffer<int>& flag, hipStream_t stream) {
  const TraceConfig& c = trace.config;
  const std::size_t n1 = static_cast<std::size_t>(is_gated(c.activation) ? 2 * c.intermediate : c.intermediate) * c.hidden;
  const std::size_t n2 = static_cast<std::size_t>(c.hidden) * c.intermediate;
  w1f.reserve(n1, "expert w1 (float)");
  w2f.reserve(n2, "expert w2 (float)");
  load_expert_weights(trace, weights, layer_pos, expert, false, true, w1f.get(), w2f.get(), staging, host, stream);
  flag.reserve(1, "e4m3 check");
  MOESIM_GPU_CHECK(hipMemsetAsync(flag.get(), 0, sizeof(int), stream));
  to_e4m3(dst1, w1f.get(), static_cast<std::int64_t>(n1), flag.get(), stream);
  to_bf16(dst2, w2f.get(), static_cast<std::int64_t>(n2), stream);
  int bad = 0;
  MOESIM_GPU_CHECK(hipMemcpyAsync(&bad, flag.get(), sizeof(int), hipMemcpyDeviceToHost, stream));
  MOESIM_GPU_CHECK(hipStreamSynchronize(stream));
  if (bad)
    throw Error(where(trace.path) + "gpu fast mode, fp8: expert " + std::to_string(expert) + " of layer " +
                std::to_string(trace.layers.at(layer_pos).index) +
                " has w1 values that are not e4m3fn values; the block-scaled fp8 GEMM multiplies e4m3 weights");
}

}  // namespace moesim::gpu
