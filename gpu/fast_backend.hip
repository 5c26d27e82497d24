#include "fast_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "blas.hpp"
#include "buffer.hpp"
#include "device_inputs.hpp"
#include "error.hpp"
#include "fast_fp8.hpp"
#include "fast_kernels.hpp"
#include "fast_layer.hpp"
#include "gpu_backend.hpp"
#include "parallel.hpp"

namespace moesim::gpu {
namespace {

constexpr std::int64_t kChunkRows = 32768;  // rows per device pass: bounds the intermediates

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

class FastBackend final : public ExpertBackend {
 public:
  FastBackend(const Trace& trace, const WeightProvider& weights, int device, int threads)
      : trace_(trace), weights_(weights), device_(device), threads_(std::max(1, threads)) {
    refuse_fast_unsupported(trace);
    MOESIM_GPU_CHECK(hipSetDevice(device));
    MOESIM_GPU_CHECK(hipStreamCreate(&stream_));
    blas_ = std::make_unique<Blas>(stream_);
  }
  ~FastBackend() override {
    blas_.reset();
    if (stream_) (void)hipStreamDestroy(stream_);
  }
  FastBackend(const FastBackend&) = delete;
  FastBackend& operator=(const FastBackend&) = delete;

  std::string name() const override { return "gpu-fast"; }
  int workers(int) const override { return 1; }  // one device, one stream
  void run(const ExpertTask& t, double*, int) override { refuse(t.options.numerics); }
  void run(const ExpertTask& t, float* out, int) override {
    const Numerics mode = t.options.numerics;
    if (mode != Numerics::bf16 && mode != Numerics::fp8) refuse(mode);
    // fp8 mode's shared experts run the bf16 pipeline on the undispatched token (NUMERICS.md).
    const bool fp8 = mode == Numerics::fp8 && !t.shared;
    if (fp8 && !fp8_checked_) {
      refuse_fast_fp8(trace_, t.options.fp8_format);
      fp8_checked_ = true;
    }
    if (t.input_weights)  // refused at construction; a caller passing them anyway is a bug
      throw Error(where(trace_.path) + "gpu fast backend: the router weight on the input is not in the fast mode");
    if (t.num_rows == 0) return;
    MOESIM_GPU_CHECK(hipSetDevice(device_));
    const Clock::time_point t0 = Clock::now();
    ensure_layer(t.layer_pos, fp8);
    ensure_expert(t.layer_pos, t.expert, t.shared, fp8);
    const Clock::time_point t1 = Clock::now();
    const TraceConfig& c = trace_.config;
    const int H = c.hidden, I = t.shared ? c.shared_intermediate : c.intermediate;
    const int rows1 = is_gated(c.activation) ? 2 * I : I;
    const std::int64_t chunk = std::min(kChunkRows, t.num_rows);
    // fp8: GEMM1 runs on a row count padded to kFp8RowMultiple with copies of the chunk's first row.
    const std::int64_t room = chunk + kFp8RowMultiple - 1;
    if (fp8) {
      aq_.reserve(static_cast<std::size_t>(room) * H, "expert input rows (e4m3)");
      as_.reserve(static_cast<std::size_t>(room) * (H / 128), "expert input scales");
    } else {
      a_.reserve(static_cast<std::size_t>(chunk) * H, "expert input rows");
    }
    g_.reserve(static_cast<std::size_t>(room) * rows1, "GEMM1 output");
    h_.reserve(static_cast<std::size_t>(chunk) * I, "activation output");
    y_.reserve(static_cast<std::size_t>(chunk) * H, "expert outputs");
    index_host_.resize(static_cast<std::size_t>(room));
    staging_.reserve(static_cast<std::size_t>(chunk) * H);
    for (std::int64_t j0 = 0; j0 < t.num_rows; j0 += chunk) {
      const std::int64_t n = std::min(chunk, t.num_rows - j0);
      stacked_rows(t.rows + j0, n, rank_base_, index_host_.data(), "gpu fast backend");
      const std::int64_t padded = fp8 ? (n + kFp8RowMultiple - 1) / kFp8RowMultiple * kFp8RowMultiple : n;
      for (std::int64_t j = n; j < padded; ++j) index_host_[j] = index_host_[0];
      upload(index_, index_host_.data(), static_cast<std::size_t>(padded), stream_, "row indices");
      if (fp8) {  // codes move as pairs of bytes; scales block-major, as the GEMM reads them
        gather_rows(reinterpret_cast<std::uint16_t*>(aq_.get()), reinterpret_cast<const std::uint16_t*>(xq_.get()),
                    index_.get(), padded, H / 2, stream_);
        gather_scales(as_.get(), xs_.get(), index_.get(), nullptr, nullptr, padded, H / 128, stream_);
        blas_->gemm_nt_fp8(g_.get(), aq_.get(), as_.get(), w1q_.get(), w1s_.get(), padded, rows1, H);
      } else {
        gather_rows(a_.get(), x_.get(), index_.get(), n, H, stream_);
        blas_->gemm_nt_bf16(g_.get(), a_.get(), w1_.get(), n, rows1, H);
      }
      activate_bf16(h_.get(), g_.get(), rows1, n, I, c.activation, stream_);
      blas_->gemm_nt_bf16(y_.get(), h_.get(), w2_.get(), n, H, I);
      MOESIM_GPU_CHECK(hipMemcpyAsync(staging_.get(), y_.get(), static_cast<std::size_t>(n) * H * 2,
                                      hipMemcpyDeviceToHost, stream_));
      MOESIM_GPU_CHECK(hipStreamSynchronize(stream_));  // index_host_ and staging_ are reused
      // Widening the returned rows into their places is host memory traffic (6 bytes per element):
      // on `threads_` threads, in blocks of rows, each writing only its own rows.
      constexpr std::int64_t kBlock = 256;
      parallel_items(static_cast<std::size_t>((n + kBlock - 1) / kBlock), threads_, [&](std::size_t b) {
        const std::int64_t jb = static_cast<std::int64_t>(b) * kBlock;
        for (std::int64_t j = jb; j < std::min(n, jb + kBlock); ++j) {
          float* dst = t.out_rows ? static_cast<float*>(t.out_rows[j0 + j]) : out + (j0 + j) * H;
          const std::uint16_t* src = staging_.get() + j * H;
          for (int col = 0; col < H; ++col) {
            const std::uint32_t bits = static_cast<std::uint32_t>(src[col]) << 16;
            std::memcpy(dst + col, &bits, 4);
          }
        }
      });
    }
    t_inputs_ += std::chrono::duration<double>(t1 - t0).count();
    t_ffn_ += since(t1);
    ++calls_;
    rows_ += t.num_rows;
  }
  std::string profile() const override {
    char line[200];
    std::snprintf(line, sizeof line,
                  "gpu fast backend: %lld calls, %lld rows; tokens and weights %.3f s, GEMMs and copies %.3f s",
                  static_cast<long long>(calls_), static_cast<long long>(rows_), t_inputs_, t_ffn_);
    return line;
  }

 private:
  [[noreturn]] void refuse(Numerics n) const {
    throw Error(where(trace_.path) + "gpu fast backend computes numerics bf16 and fp8, not " +
                std::string(moesim::name(n)) + "; use --backend gpu (bit for bit the CPU) for other modes");
  }

  // Every rank's rb(x) of the layer, stacked rank after rank, as bf16; with fp8 also the
  // contract's dispatch quantization of every token (codes and 1 x 128 scales), made once.
  void ensure_layer(int layer_pos, bool fp8) {
    if (layer_pos != layer_pos_) {
      layer_pos_ = -1;  // until the copies are in
      expert_ = -2;
      quantized_ = false;
      upload_tokens(trace_, layer_pos, x32_, scales_, rank_base_, stream_);
      const std::size_t n = static_cast<std::size_t>(rank_base_.back()) * trace_.config.hidden;
      x_.reserve(n, "bf16 token rows");
      to_bf16(x_.get(), x32_.get(), static_cast<std::int64_t>(n), stream_);
      MOESIM_GPU_CHECK(hipStreamSynchronize(stream_));
      layer_pos_ = layer_pos;
    }
    if (fp8 && !quantized_) {
      const std::int64_t rows = rank_base_.back();
      const int H = trace_.config.hidden;
      xq_.reserve(static_cast<std::size_t>(rows) * H, "e4m3 token rows");
      xs_.reserve(static_cast<std::size_t>(rows) * (H / 128), "token scales");
      quantize_fp8(xq_.get(), xs_.get(), x32_.get(), rows, H, stream_);
      MOESIM_GPU_CHECK(hipStreamSynchronize(stream_));
      quantized_ = true;
    }
  }

  void ensure_expert(int layer_pos, int expert, bool shared, bool fp8) {
    if (expert == expert_ && shared == shared_ && fp8 == fp8_) return;
    expert_ = -2;
    const TraceConfig& c = trace_.config;
    const int I = shared ? c.shared_intermediate : c.intermediate;
    const std::size_t n1 = static_cast<std::size_t>(is_gated(c.activation) ? 2 * I : I) * c.hidden;
    w2_.reserve(static_cast<std::size_t>(c.hidden) * I, "expert w2 (bf16)");
    if (fp8) {
      const std::size_t blocks = static_cast<std::size_t>(c.hidden / 128) * (n1 / c.hidden);
      w1q_.reserve(n1, "expert w1 (e4m3)");
      w1s_.reserve(blocks, "w1 scales");
      fill(w1s_.get(), 1.0f, static_cast<std::int64_t>(blocks), stream_);
      load_expert_fp8(trace_, weights_, layer_pos, expert, w1q_.get(), w2_.get(), w1f_, w2f_, wstaging_, host_, flag_,
                      stream_);
    } else {
      w1_.reserve(n1, "expert w1 (bf16)");
      load_expert_bf16(trace_, weights_, layer_pos, expert, shared, w1_.get(), w2_.get(), w1f_, w2f_, wstaging_, host_,
                       stream_);
    }
    MOESIM_GPU_CHECK(hipStreamSynchronize(stream_));
    expert_ = expert;
    shared_ = shared;
    fp8_ = fp8;
  }

  const Trace& trace_;
  const WeightProvider& weights_;
  int device_;
  int threads_;
  hipStream_t stream_{};
  std::unique_ptr<Blas> blas_;
  int layer_pos_ = -1, expert_ = -2;
  bool shared_ = false, fp8_ = false, quantized_ = false, fp8_checked_ = false;
  std::vector<std::int64_t> rank_base_, index_host_;
  DeviceBuffer<float> x32_, scales_, w1f_, w2f_, wstaging_;
  DeviceBuffer<std::uint16_t> x_, w1_, w2_, a_, g_, h_, y_;
  DeviceBuffer<std::int64_t> index_;
  DeviceBuffer<std::uint8_t> xq_, aq_, w1q_;  // fp8: token codes, dispatched codes, w1 codes
  DeviceBuffer<float> xs_, as_, w1s_;         // and their scales
  DeviceBuffer<int> flag_;
  PinnedBuffer<std::uint16_t> staging_;
  ExpertMatrices host_;
  std::int64_t calls_ = 0, rows_ = 0;
  double t_inputs_ = 0, t_ffn_ = 0;
};

}  // namespace

std::unique_ptr<ExpertBackend> make_fast_backend(const Trace& trace, const WeightProvider& weights, int device,
                                                 int threads) {
  (void)device_info(device);  // present, or an error naming it
  return std::make_unique<FastBackend>(trace, weights, device, threads);
}

}  // namespace moesim::gpu
