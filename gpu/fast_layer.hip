#include "fast_layer.hpp"

#include <cstring>
#include <string>
#include <vector>

#include "blas.hpp"
#include "buffer.hpp"
#include "device_inputs.hpp"
#include "error.hpp"
#include "expert_rows.hpp"
#include "fast_fp8.hpp"
#include "fast_kernels.hpp"

namespace moesim::gpu {

void refuse_fast_unsupported(const Trace& trace) {
  const TraceConfig& c = trace.config;
  const char* what = is_fp8(c.token_dtype)          ? "fp8 tokens"
                     : c.router_weight_on_input     ? "the router weight on the input"
                     : c.expert_bias                ? "expert biases (expert_bias = 1)"
                     : c.activation == Activation::swiglu_oai ? "activation swiglu_oai_and_mul"
                     : c.shared_expert_gate         ? "the shared-expert gate"
                                                    : nullptr;
  if (what)
    throw Error(where(trace.path) + "gpu fast mode: " + what +
                " not in the fast mode yet; use the deterministic GPU backend (--backend gpu)");
}

void refuse_fast_fp8(const Trace& trace, DType fp8_format) {
  const TraceConfig& c = trace.config;
  std::string why;
  if (c.scale_block != 128)
    why = "scale_block " + std::to_string(c.scale_block) + " (the block-scaled GEMM takes 1 x 128 blocks)";
  else if (c.hidden % 128 != 0)
    why = "hidden " + std::to_string(c.hidden) + ", not a multiple of 128";
  else if ((is_gated(c.activation) ? 2 * c.intermediate : c.intermediate) % kFp8RowMultiple != 0)
    why = "w1 of " + std::to_string(is_gated(c.activation) ? 2 * c.intermediate : c.intermediate) +
          " rows, not a multiple of " + std::to_string(kFp8RowMultiple) + " (the block-scaled GEMM's scale layout)";
  else if (c.weight_dtype != DType::e4m3)
    why = std::string(name(c.weight_dtype)) + " weights (the fp8 GEMM multiplies e4m3 weights)";
  else if (fp8_format != DType::e4m3)
    why = "dispatch format " + std::string(name(fp8_format)) + " (OCP e4m3fn only)";
  if (!why.empty())
    throw Error(where(trace.path) + "gpu fast mode, fp8: " + why +
                "; use --numerics bf16, or the deterministic GPU backend (--backend gpu)");
}

struct FastLayer::State {
  const Trace& trace;
  int layer_pos;
  FastCombine combine;
  bool fp8 = false;  // routed GEMM1 on e4m3 rows and weights (numerics fp8)
  hipStream_t stream{};
  std::unique_ptr<Blas> blas;
  hipEvent_t ev[7]{};
  int K = 0, H = 0, I = 0, Is = 0, S = 0, rows1 = 0, rows1s = 0;
  std::int64_t tokens = 0, rows = 0;
  std::vector<std::int64_t> rank_base, offset;  // offset[e]: expert e's first row, [L + 1]
  std::vector<int> experts;                     // logical experts with rows, ascending
  std::vector<std::int64_t> slot_row_host;      // [tokens * K]: the row of (token, slot), or -1
  FastCombineSpec spec;
  DeviceBuffer<float> x32, scales, staging, w1f, w2f, out, acc, weights;
  DeviceBuffer<std::uint16_t> x, w1, w2, sw1, sw2, a, g, h, y, gs, hs, ys;
  DeviceBuffer<std::int64_t> src_row, slot_row;
  // fp8: token codes and scales, the dispatched ones (scales block-major per expert, from
  // scale_off[e]), w1 codes and its unit scales.
  DeviceBuffer<std::uint8_t> xq, aq, w1q;
  DeviceBuffer<float> xs, as, w1s;
  DeviceBuffer<std::int64_t> scale_base, scale_stride;
  DeviceBuffer<int> flag;
  std::vector<std::int64_t> scale_off;
  FastTimes times;

  State(const Trace& t, int l, FastCombine c) : trace(t), layer_pos(l), combine(c) {}
  ~State() {
    for (hipEvent_t e : ev)
      if (e) (void)hipEventDestroy(e);
    blas.reset();
    if (stream) (void)hipStreamDestroy(stream);
  }

  void load(const WeightProvider& wp, int expert, bool shared, std::uint16_t* dst1, std::uint16_t* dst2,
            ExpertMatrices& host) {
    load_expert_bf16(trace, wp, layer_pos, expert, shared, dst1, dst2, w1f, w2f, staging, host, stream);
  }
};

FastLayer::FastLayer(const Trace& trace, const WeightProvider& weights, int layer_pos, FastCombine combine,
                     int device, Numerics numerics, DType fp8_format)
    : s_(std::make_unique<State>(trace, layer_pos, combine)) {
  refuse_fast_unsupported(trace);
  if (numerics != Numerics::bf16 && numerics != Numerics::fp8)
    throw Error(where(trace.path) + "gpu fast mode computes numerics bf16 and fp8, not " + std::string(name(numerics)));
  if (numerics == Numerics::fp8) refuse_fast_fp8(trace, fp8_format);
  check_layer(trace, layer_pos);
  State& s = *s_;
  s.fp8 = numerics == Numerics::fp8;
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers[layer_pos];
  MOESIM_GPU_CHECK(hipSetDevice(device));
  MOESIM_GPU_CHECK(hipStreamCreate(&s.stream));
  for (hipEvent_t& e : s.ev) MOESIM_GPU_CHECK(hipEventCreate(&e));
  s.blas = std::make_unique<Blas>(s.stream);
  s.K = c.top_k;
  s.H = c.hidden;
  s.I = c.intermediate;
  s.Is = c.shared_intermediate;
  s.S = c.num_shared_experts;
  const bool gated = is_gated(c.activation);
  s.rows1 = gated ? 2 * s.I : s.I;
  s.rows1s = gated ? 2 * s.Is : s.Is;

  // The plan: the reference's rows per logical expert, laid out expert after expert.
  const std::vector<std::vector<RowRef>> plan = expert_rows(c, layer);
  upload_tokens(trace, layer_pos, s.x32, s.scales, s.rank_base, s.stream);
  s.tokens = s.rank_base.back();
  const int L = static_cast<int>(plan.size());
  // fp8: the block-scaled GEMM takes the 1 x 128 scales of a row count that is a multiple of 4,
  // so each expert's rows are padded to one with copies of its first row, which no slot reads.
  const std::int64_t pad = s.fp8 ? kFp8RowMultiple : 1;
  s.offset.assign(static_cast<std::size_t>(L) + 1, 0);
  std::int64_t routed = 0;
  for (int e = 0; e < L; ++e) {
    const std::int64_t n = static_cast<std::int64_t>(plan[e].size());
    s.offset[e + 1] = s.offset[e] + (n + pad - 1) / pad * pad;
    routed += n;
    if (!plan[e].empty()) s.experts.push_back(e);
  }
  s.rows = s.offset[L];
  std::vector<std::int64_t> src(static_cast<std::size_t>(s.rows));
  s.slot_row_host.assign(static_cast<std::size_t>(s.tokens) * s.K, -1);
  for (int e = 0; e < L; ++e)
    for (std::int64_t j = s.offset[e]; j < s.offset[e + 1]; ++j) {
      const std::size_t i = static_cast<std::size_t>(j - s.offset[e]);
      const RowRef& ref = plan[e][i < plan[e].size() ? i : 0];
      const std::int64_t tok = s.rank_base[ref.rank] + ref.token;
      src[j] = tok;
      if (i < plan[e].size()) s.slot_row_host[tok * s.K + ref.slot] = j;
    }
  std::vector<float> topk_w(static_cast<std::size_t>(s.tokens) * s.K);
  for (std::size_t r = 0; r < layer.ranks.size(); ++r)
    std::memcpy(topk_w.data() + s.rank_base[r] * s.K, layer.ranks[r].topk_weights.data(),
                layer.ranks[r].topk_weights.size() * sizeof(float));
  std::vector<std::int64_t> base, stride;
  if (s.fp8) {  // each expert's GEMM reads its rows' scales as [H / 128][n_e] from nb * offset[e]
    const std::int64_t nb = s.H / 128;
    s.scale_off.assign(static_cast<std::size_t>(L) + 1, 0);
    base.resize(src.size());
    stride.resize(src.size());
    for (int e = 0; e <= L; ++e) s.scale_off[e] = nb * s.offset[e];
    for (int e = 0; e < L; ++e)
      for (std::int64_t j = s.offset[e]; j < s.offset[e + 1]; ++j)
        base[j] = s.scale_off[e] + (j - s.offset[e]), stride[j] = s.offset[e + 1] - s.offset[e];
    upload(s.scale_base, base, s.stream, "dispatched scale places");
    upload(s.scale_stride, stride, s.stream, "dispatched scale strides");
  }
  upload(s.src_row, src, s.stream, "dispatch source rows");
  upload(s.slot_row, s.slot_row_host, s.stream, "combine slot rows");
  upload(s.weights, topk_w, s.stream, "router weights");

  const std::size_t Hs = static_cast<std::size_t>(s.H), T = static_cast<std::size_t>(s.tokens),
                    N = static_cast<std::size_t>(s.rows);
  s.x.reserve(T * Hs, "bf16 token rows");
  to_bf16(s.x.get(), s.x32.get(), static_cast<std::int64_t>(T * Hs), s.stream);  // step 4: rb(x)
  const std::size_t n1 = static_cast<std::size_t>(s.rows1) * Hs, n2 = Hs * s.I;
  s.w2.reserve(n2 * L, "routed w2 (bf16)");
  ExpertMatrices host;
  if (s.fp8) {
    const std::size_t nb = Hs / 128;
    s.xq.reserve(T * Hs, "e4m3 token rows");
    s.xs.reserve(T * nb, "token scales");
    quantize_fp8(s.xq.get(), s.xs.get(), s.x32.get(), s.tokens, s.H, s.stream);
    s.aq.reserve(N * Hs, "dispatched e4m3 rows");
    s.as.reserve(static_cast<std::size_t>(s.scale_off[L]), "dispatched scales");
    s.w1q.reserve(n1 * L, "routed w1 (e4m3)");
    s.w1s.reserve(nb * s.rows1, "w1 scales");
    fill(s.w1s.get(), 1.0f, static_cast<std::int64_t>(nb * s.rows1), s.stream);
    for (int e : s.experts)
      load_expert_fp8(trace, weights, layer_pos, e, s.w1q.get() + n1 * e, s.w2.get() + n2 * e, s.w1f, s.w2f, s.staging,
                      host, s.flag, s.stream);
  } else {
    s.w1.reserve(n1 * L, "routed w1 (bf16)");
    for (int e : s.experts) s.load(weights, e, false, s.w1.get() + n1 * e, s.w2.get() + n2 * e, host);
  }
  if (s.S > 0) {
    const std::size_t m1 = static_cast<std::size_t>(s.rows1s) * Hs, m2 = Hs * s.Is;
    s.sw1.reserve(m1 * s.S, "shared w1 (bf16)");
    s.sw2.reserve(m2 * s.S, "shared w2 (bf16)");
    for (int e = 0; e < s.S; ++e) s.load(weights, e, true, s.sw1.get() + m1 * e, s.sw2.get() + m2 * e, host);
    s.gs.reserve(T * s.rows1s, "shared GEMM1 output");
    s.hs.reserve(T * s.Is, "shared activation output");
    s.ys.reserve(T * Hs * s.S, "shared expert outputs");
  }
  if (!s.fp8) s.a.reserve(N * Hs, "dispatched rows");
  s.g.reserve(N * s.rows1, "GEMM1 output");
  s.h.reserve(N * s.I, "activation output");
  s.y.reserve(N * Hs, "expert outputs");
  s.out.reserve(T * Hs, "final outputs");
  set_combine(combine);
  MOESIM_GPU_CHECK(hipStreamSynchronize(s.stream));

  const CombineSpec cs = combine_spec(c, numerics);
  s.spec.hidden = s.H;
  s.spec.top_k = s.K;
  s.spec.scale = static_cast<float>(cs.routed_scaling_factor);
  s.spec.num_shared = s.S;
  s.spec.shared = s.S > 0 ? s.ys.get() : nullptr;
  s.times.rows = routed;
  // bf16 rows, or e4m3 codes and their scales, read and written
  s.times.dispatch_bytes = s.fp8 ? 2.0 * static_cast<double>(N) * Hs * (1 + 4.0 / 128) : 2.0 * static_cast<double>(N) * Hs * 2;
  s.times.combine_bytes = (static_cast<double>(N) + static_cast<double>(T) * s.S) * Hs * 2 + static_cast<double>(T) * Hs * 4;
  s.times.flops = 2.0 * static_cast<double>(routed) * Hs * (s.rows1 + s.I) + 2.0 * static_cast<double>(T) * s.S * Hs * (s.rows1s + s.Is);
}

FastLayer::~FastLayer() = default;

void FastLayer::set_combine(FastCombine combine) {
  State& s = *s_;
  if (combine == FastCombine::atomic)
    s.acc.reserve(static_cast<std::size_t>(s.tokens) * static_cast<std::size_t>(s.H), "combine accumulator");
  s.combine = combine;
}

FastTimes FastLayer::run() {
  State& s = *s_;
  const hipStream_t st = s.stream;
  const std::int64_t H = s.H;
  MOESIM_GPU_CHECK(hipEventRecord(s.ev[0], st));
  if (s.fp8) {  // codes move as pairs of bytes: rows of H / 2 uint16
    gather_rows(reinterpret_cast<std::uint16_t*>(s.aq.get()), reinterpret_cast<const std::uint16_t*>(s.xq.get()),
                s.src_row.get(), s.rows, s.H / 2, st);
    gather_scales(s.as.get(), s.xs.get(), s.src_row.get(), s.scale_base.get(), s.scale_stride.get(), s.rows, s.H / 128,
                  st);
  } else {
    gather_rows(s.a.get(), s.x.get(), s.src_row.get(), s.rows, s.H, st);
  }
  MOESIM_GPU_CHECK(hipEventRecord(s.ev[1], st));
  for (int e : s.experts) {
    const std::int64_t j = s.offset[e], n = s.offset[e + 1] - j, w = static_cast<std::int64_t>(e) * s.rows1 * H;
    if (s.fp8)
      s.blas->gemm_nt_fp8(s.g.get() + j * s.rows1, s.aq.get() + j * H, s.as.get() + s.scale_off[e], s.w1q.get() + w,
                          s.w1s.get(), n, s.rows1, s.H);
    else
      s.blas->gemm_nt_bf16(s.g.get() + j * s.rows1, s.a.get() + j * H, s.w1.get() + w, n, s.rows1, s.H);
  }
  MOESIM_GPU_CHECK(hipEventRecord(s.ev[2], st));
  activate_bf16(s.h.get(), s.g.get(), s.rows1, s.rows, s.I, s.trace.config.activation, st);
  MOESIM_GPU_CHECK(hipEventRecord(s.ev[3], st));
  for (int e : s.experts) {
    const std::int64_t j = s.offset[e], n = s.offset[e + 1] - j;
    s.blas->gemm_nt_bf16(s.y.get() + j * H, s.h.get() + j * s.I, s.w2.get() + static_cast<std::int64_t>(e) * H * s.I, n,
                         s.H, s.I);
  }
  MOESIM_GPU_CHECK(hipEventRecord(s.ev[4], st));
  for (int e = 0; e < s.S; ++e) {
    s.blas->gemm_nt_bf16(s.gs.get(), s.x.get(), s.sw1.get() + static_cast<std::int64_t>(e) * s.rows1s * H, s.tokens,
                         s.rows1s, s.H);
    activate_bf16(s.hs.get(), s.gs.get(), s.rows1s, s.tokens, s.Is, s.trace.config.activation, st);
    s.blas->gemm_nt_bf16(s.ys.get() + e * s.tokens * H, s.hs.get(), s.sw2.get() + static_cast<std::int64_t>(e) * H * s.Is,
                         s.tokens, s.H, s.Is);
  }
  MOESIM_GPU_CHECK(hipEventRecord(s.ev[5], st));
  if (s.combine == FastCombine::ordered) {
    combine_ordered(s.out.get(), s.y.get(), s.slot_row.get(), s.weights.get(), s.tokens, s.spec, st);
  } else {
    MOESIM_GPU_CHECK(hipMemsetAsync(s.acc.get(), 0, static_cast<std::size_t>(s.tokens) * H * sizeof(float), st));
    combine_atomic(s.acc.get(), s.y.get(), s.slot_row.get(), s.weights.get(), s.tokens, s.H, s.K, st);
    combine_finish(s.out.get(), s.acc.get(), s.tokens, s.spec, st);
  }
  MOESIM_GPU_CHECK(hipEventRecord(s.ev[6], st));
  MOESIM_GPU_CHECK(hipEventSynchronize(s.ev[6]));
  const auto ms = [&](int a, int b) {
    float v = 0;
    MOESIM_GPU_CHECK(hipEventElapsedTime(&v, s.ev[a], s.ev[b]));
    return static_cast<double>(v);
  };
  FastTimes& t = s.times;
  t.dispatch_ms = ms(0, 1);
  t.gemm1_ms = ms(1, 2);
  t.activation_ms = ms(2, 3);
  t.gemm2_ms = ms(3, 4);
  t.shared_ms = ms(4, 5);
  t.combine_ms = ms(5, 6);
  t.total_ms = ms(0, 6);
  return t;
}

LayerOutputs FastLayer::outputs(bool expert_out) const {
  const State& s = *s_;
  const Layer& layer = s.trace.layers[s.layer_pos];
  const std::size_t H = static_cast<std::size_t>(s.H), K = static_cast<std::size_t>(s.K);
  std::vector<float> fo(static_cast<std::size_t>(s.tokens) * H);
  MOESIM_GPU_CHECK(hipMemcpyAsync(fo.data(), s.out.get(), fo.size() * sizeof(float), hipMemcpyDeviceToHost, s.stream));
  std::vector<std::uint16_t> y;
  if (expert_out) {
    y.resize(static_cast<std::size_t>(s.rows) * H);
    MOESIM_GPU_CHECK(hipMemcpyAsync(y.data(), s.y.get(), y.size() * 2, hipMemcpyDeviceToHost, s.stream));
  }
  MOESIM_GPU_CHECK(hipStreamSynchronize(s.stream));
  LayerOutputs out;
  out.layer_index = layer.index;
  out.ranks.resize(layer.ranks.size());
  for (std::size_t r = 0; r < layer.ranks.size(); ++r) {
    RankOutputs& ro = out.ranks[r];
    ro.num_tokens = layer.ranks[r].num_tokens;
    ro.final_out.wide = ro.expert_out.wide = false;
    const std::size_t base = static_cast<std::size_t>(s.rank_base[r]), T = static_cast<std::size_t>(ro.num_tokens);
    ro.final_out.f32.assign(fo.begin() + static_cast<std::ptrdiff_t>(base * H),
                            fo.begin() + static_cast<std::ptrdiff_t>((base + T) * H));
    if (!expert_out) continue;
    ro.expert_out.f32.assign(T * K * H, 0.0f);  // zeros for -1 slots, as the reference leaves them
    for (std::size_t i = 0; i < T * K; ++i) {
      const std::int64_t j = s.slot_row_host[base * K + i];
      if (j < 0) continue;
      float* dst = ro.expert_out.f32.data() + i * H;
      const std::uint16_t* src = y.data() + static_cast<std::size_t>(j) * H;
      for (std::size_t c = 0; c < H; ++c) {
        const std::uint32_t bits = static_cast<std::uint32_t>(src[c]) << 16;
        std::memcpy(dst + c, &bits, 4);
      }
    }
  }
  return out;
}

std::string fast_backend_name(FastCombine c) { return c == FastCombine::ordered ? "gpu-fast" : "gpu-atomic"; }

std::vector<LayerOutputs> run_fast(const Trace& trace, const WeightProvider& weights, FastCombine combine,
                                   int device, Numerics numerics) {
  std::vector<LayerOutputs> out;
  for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) {
    FastLayer layer(trace, weights, l, combine, device, numerics);
    layer.run();
    out.push_back(layer.outputs(true));
  }
  return out;
}

}  // namespace moesim::gpu
