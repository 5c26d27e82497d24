#include "gpu_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "buffer.hpp"
#include "device_inputs.hpp"
#include "ffn.hpp"
#include "gemm.hpp"

namespace moesim::gpu {
namespace {

constexpr std::int64_t kChunkRows = 16384;  // rows per device pass: bounds the intermediates
constexpr std::int64_t kScatterThreads = 8;  // host threads copying a chunk's rows to their places


class Stream {
 public:
  Stream() { MOESIM_GPU_CHECK(hipStreamCreate(&s_)); }
  ~Stream() { (void)hipStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  hipStream_t get() const { return s_; }
  void sync() const { MOESIM_GPU_CHECK(hipStreamSynchronize(s_)); }

 private:
  hipStream_t s_{};
};

// Device buffers of one precision: the current expert's weights and the FFN's intermediates.
template <class T>
struct Work {
  DeviceBuffer<T> w1, w2, a, g, h, y;
};

class GpuBackend final : public ExpertBackend {
 public:
  GpuBackend(const Trace& trace, const WeightProvider& weights, int device)
      : trace_(trace), weights_(weights), device_(device) {
    // Not in the device kernels yet: refused rather than computed without them.
    if (trace.config.expert_bias || trace.config.activation == Activation::swiglu_oai)
      throw Error(where(trace.path) + "gpu backend: " +
                  (trace.config.expert_bias ? "expert biases (expert_bias = 1)" : "activation swiglu_oai_and_mul") +
                  " not supported on the GPU yet; run with --backend cpu");
    MOESIM_GPU_CHECK(hipSetDevice(device));
    stream_ = std::make_unique<Stream>();
  }
  std::string name() const override { return "gpu"; }
  int workers(int) const override { return 1; }  // one device, one stream: calls are serial
  void run(const ExpertTask& t, double* out, int) override { run_typed(t, out, f64_); }
  void run(const ExpertTask& t, float* out, int) override { run_typed(t, out, f32_); }
  std::string profile() const override {
    char line[256];
    std::snprintf(line, sizeof line,
                  "gpu backend: %lld calls, %lld rows; token upload %.3f s, weights %.3f s, FFN kernels %.3f s, "
                  "output download %.3f s",
                  static_cast<long long>(calls_), static_cast<long long>(rows_), t_layer_, t_weights_, t_ffn_,
                  t_download_);
    return line;
  }

 private:
  struct Key {
    int layer_pos = -1, expert = -1;
    bool shared = false;
    Numerics numerics = Numerics::exact;
    bool operator==(const Key&) const = default;
  };

  // Every rank's tokens of the layer, stacked rank after rank: [sum T_r, H] and their scales.
  void ensure_layer(int layer_pos) {
    if (layer_pos == layer_pos_) return;
    const Clock t0 = now();
    layer_pos_ = -1;  // until the copies are in
    upload_tokens(trace_, layer_pos, x_, scales_, rank_base_, stream_->get());
    layer_pos_ = layer_pos;
    t_layer_ += since(t0);
  }

  // The expert's w1 [rows1, H] and w2 [H, I] in the mode's precision.
  template <class T>
  void ensure_expert(const Key& key, Work<T>& wk) {
    if (key == key_) return;
    const Clock t0 = now();
    key_ = Key{};
    const TraceConfig& c = trace_.config;
    const int I = key.shared ? c.shared_intermediate : c.intermediate;
    wk.w1.reserve(static_cast<std::size_t>(is_gated(c.activation) ? 2 * I : I) * c.hidden, "expert w1");
    wk.w2.reserve(static_cast<std::size_t>(c.hidden) * I, "expert w2");
    load_expert_weights(trace_, weights_, key.layer_pos, key.expert, key.shared, rounds_bf16(key.numerics),
                        wk.w1.get(), wk.w2.get(), staging_, host_, stream_->get());
    stream_->sync();
    key_ = key;
    t_weights_ += since(t0);
  }

  template <class T>
  void run_typed(const ExpertTask& t, T* out, Work<T>& wk) {
    const TraceConfig& c = trace_.config;
    const Numerics mode = t.options.numerics;
    if (mode == Numerics::hf_bf16)  // Hugging Face eager's extra rounding points: not in the kernels yet
      throw Error(where(trace_.path) + "gpu backend: numerics hf-bf16 not supported on the GPU yet; run with --backend cpu");
    if (is_f64(mode) != (sizeof(T) == 8))
      throw Error("gpu backend: output type does not match numerics " + std::string(moesim::name(mode)));
    if (t.num_rows == 0) return;
    MOESIM_GPU_CHECK(hipSetDevice(device_));
    ensure_layer(t.layer_pos);
    const Key key{t.layer_pos, t.expert, t.shared, mode};
    ensure_expert(key, wk);

    const int H = c.hidden, I = t.shared ? c.shared_intermediate : c.intermediate;
    const bool gated = is_gated(c.activation);
    const int rows1 = gated ? 2 * I : I;
    const bool rnd = rounds_bf16(mode);
    InputRowSpec spec;
    spec.hidden = H;
    spec.scale_block = c.scale_block;
    spec.fp8_tokens = is_fp8(c.token_dtype);
    spec.round_bf16 = rnd;
    spec.dispatch_fp8 = mode == Numerics::fp8;
    spec.fnuz = (spec.fp8_tokens ? c.token_dtype : t.options.fp8_format) == DType::e4m3fnuz;
    spec.final_bf16 = mode == Numerics::bf16;
    if (spec.dispatch_fp8 && !is_fp8(spec.fp8_tokens ? c.token_dtype : t.options.fp8_format))
      throw Error("fp8 format must be e4m3 or e4m3fnuz, not " + std::string(moesim::name(t.options.fp8_format)));
    // FMA only where every product is exact in float: both operands bf16 values. GEMM1 sees
    // bf16 rows in bf16 mode only (fp8 mode's dequantized rows carry up to 24 bits); GEMM2 sees
    // bf16 act*up values in both bf16 and fp8 modes.
    const bool fused1 = mode == Numerics::bf16, fused2 = rnd;

    const std::int64_t chunk = std::min<std::int64_t>(kChunkRows, t.num_rows);
    wk.a.reserve(static_cast<std::size_t>(chunk) * H, "expert input rows");
    wk.g.reserve(static_cast<std::size_t>(chunk) * rows1, "GEMM1 output");
    wk.h.reserve(static_cast<std::size_t>(chunk) * I, "activation output");
    wk.y.reserve(static_cast<std::size_t>(chunk) * H, "GEMM2 output");
    index_host_.resize(static_cast<std::size_t>(chunk));
    for (std::int64_t j0 = 0; j0 < t.num_rows; j0 += chunk) {
      const std::int64_t n = std::min(chunk, t.num_rows - j0);
      stacked_rows(t.rows + j0, n, rank_base_, index_host_.data(), "gpu backend");
      upload(index_, index_host_.data(), static_cast<std::size_t>(n), stream_->get(), "row indices");
      const float* iw = nullptr;
      if (t.input_weights) {
        upload(input_weights_, t.input_weights + j0, static_cast<std::size_t>(n), stream_->get(), "input weights");
        iw = input_weights_.get();
      }
      const Clock t0 = now();
      make_input_rows<T>(wk.a.get(), x_.get(), spec.fp8_tokens ? scales_.get() : nullptr, index_.get(), iw, n, spec,
                         stream_->get());
      gemm_nt<T>(wk.g.get(), rows1, wk.a.get(), H, wk.w1.get(), H, n, rows1, H, fused1, rnd, stream_->get());
      activate<T>(wk.h.get(), wk.g.get(), rows1, n, I, c.activation, rnd, stream_->get());
      gemm_nt<T>(wk.y.get(), H, wk.h.get(), I, wk.w2.get(), I, n, H, I, fused2, rnd, stream_->get());
      stream_->sync();
      const Clock t1 = now();
      t_ffn_ += since(t0);
      PinnedBuffer<T>& staging = pinned<T>();
      staging.reserve(static_cast<std::size_t>(chunk) * H);
      MOESIM_GPU_CHECK(hipMemcpyAsync(staging.get(), wk.y.get(), static_cast<std::size_t>(n) * H * sizeof(T),
                                      hipMemcpyDeviceToHost, stream_->get()));
      stream_->sync();  // index_host_ and the input weights are reused by the next chunk
      scatter_rows(staging.get(), n, H, t.out_rows ? t.out_rows + j0 : nullptr, out + (t.out_rows ? 0 : j0 * H));
      t_download_ += since(t1);
    }
    ++calls_;
    rows_ += t.num_rows;
  }

  template <class T>
  PinnedBuffer<T>& pinned() {
    if constexpr (sizeof(T) == 8) return pinned64_;
    else return pinned32_;
  }

  // Rows from the pinned staging buffer to their places (out_rows[j], or out + j * H), on several
  // threads: at production size this is gigabytes, more than one core copies in the GPU's time.
  template <class T>
  static void scatter_rows(const T* src, std::int64_t n, int H, void* const* out_rows, T* out) {
    const auto copy = [&](std::int64_t j0, std::int64_t j1) {
      for (std::int64_t j = j0; j < j1; ++j)
        std::memcpy(out_rows ? out_rows[j] : out + j * H, src + j * H, sizeof(T) * H);
    };
    const std::int64_t bytes = n * H * static_cast<std::int64_t>(sizeof(T));
    const int threads = static_cast<int>(std::clamp<std::int64_t>(bytes >> 23, 1, kScatterThreads));
    if (threads == 1) return copy(0, n);
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) pool.emplace_back(copy, n * i / threads, n * (i + 1) / threads);
    for (auto& th : pool) th.join();
  }

  using Clock = std::chrono::steady_clock::time_point;
  static Clock now() { return std::chrono::steady_clock::now(); }
  static double since(Clock t0) { return std::chrono::duration<double>(now() - t0).count(); }

  const Trace& trace_;
  const WeightProvider& weights_;
  int device_;
  std::unique_ptr<Stream> stream_;
  int layer_pos_ = -1;
  std::vector<std::int64_t> rank_base_;
  DeviceBuffer<float> x_, scales_, staging_, input_weights_;
  DeviceBuffer<std::int64_t> index_;
  std::vector<std::int64_t> index_host_;
  ExpertMatrices host_;
  Key key_;
  Work<float> f32_;
  Work<double> f64_;
  PinnedBuffer<float> pinned32_;
  PinnedBuffer<double> pinned64_;
  std::int64_t calls_ = 0, rows_ = 0;
  double t_layer_ = 0, t_weights_ = 0, t_ffn_ = 0, t_download_ = 0;  // host wall seconds
};

}  // namespace

int device_count() {
  int n = 0;
  if (hipGetDeviceCount(&n) != hipSuccess) {
    (void)hipGetLastError();
    return 0;
  }
  return n;
}

DeviceInfo device_info(int device) {
  const int n = device_count();
  if (device < 0 || device >= n)
    throw Error("gpu: device " + std::to_string(device) + " not present (" + std::to_string(n) + " visible)");
  DeviceInfo d;
  d.index = device;
  MOESIM_GPU_CHECK(hipSetDevice(device));
  hipDeviceProp_t prop;
  MOESIM_GPU_CHECK(hipGetDeviceProperties(&prop, device));
  d.name = prop.name;
  d.multiprocessors = prop.multiProcessorCount;
  MOESIM_GPU_CHECK(hipMemGetInfo(&d.free_bytes, &d.total_bytes));
  return d;
}

std::unique_ptr<ExpertBackend> make_gpu_backend(const Trace& trace, const WeightProvider& weights, int device) {
  (void)device_info(device);  // present, or an error naming it
  return std::make_unique<GpuBackend>(trace, weights, device);
}

}  // namespace moesim::gpu
