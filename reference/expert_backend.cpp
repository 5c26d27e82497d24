#include "expert_backend.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

#include "error.hpp"

namespace moesim {
namespace {

constexpr std::int64_t kGatherRows = 1024;  // rows gathered per pass: bounds the buffers of hot experts

class CpuBackend final : public ExpertBackend {
 public:
  CpuBackend(const Trace& trace, const WeightProvider& weights) : trace_(trace), weights_(weights) {}
  std::string name() const override { return "cpu"; }
  int workers(int threads) const override { return std::max(1, threads); }
  void run(const ExpertTask& t, double* out, int worker) override { run_typed(t, out, worker); }
  void run(const ExpertTask& t, float* out, int worker) override { run_typed(t, out, worker); }

 private:
  struct Key {
    int layer_pos = -1, expert = -1;
    bool shared = false;
    Numerics numerics = Numerics::exact;
    bool operator==(const Key&) const = default;
  };
  struct Scratch {  // per worker, reused: fresh pages are slow to fault in
    Key key;
    ExpertMatrices m;
    PreparedExpert prepared;
    ExpertWorkspace ws;
    std::vector<float> x, sc;
    std::vector<double> y64;
    std::vector<float> y32;
  };

  Scratch& scratch(int worker) {
    std::lock_guard<std::mutex> lock(mu_);
    while (static_cast<std::size_t>(worker) >= scratch_.size()) scratch_.push_back(std::make_unique<Scratch>());
    return *scratch_[worker];
  }

  template <class T>
  void run_typed(const ExpertTask& t, T* out, int worker) {
    const TraceConfig& c = trace_.config;
    const Layer& layer = trace_.layers.at(t.layer_pos);
    Scratch& z = scratch(worker);
    const Key key{t.layer_pos, t.expert, t.shared, t.options.numerics};
    if (!(z.key == key)) {
      if (t.shared)
        weights_.shared(t.layer_pos, t.expert, z.m);
      else
        weights_.routed(t.layer_pos, t.expert, z.m);
      z.prepared.assign(z.m, c.activation, t.options.numerics, c.swiglu_alpha, c.swiglu_limit);
      z.key = key;
    }
    const int H = c.hidden, S = c.scales_per_token();
    const bool fp8_tokens = is_fp8(c.token_dtype);
    for (std::int64_t j0 = 0; j0 < t.num_rows; j0 += kGatherRows) {
      const std::int64_t n = std::min(kGatherRows, t.num_rows - j0);
      z.x.resize(n * H);
      z.sc.resize(fp8_tokens ? n * S : 0);
      for (std::int64_t j = 0; j < n; ++j) {
        const TokenRef& ref = t.rows[j0 + j];
        const RankInput& in = layer.ranks.at(ref.rank);
        if (ref.token < 0 || ref.token >= in.num_tokens) throw Error("expert row names a token out of range");
        std::copy_n(in.x.data() + ref.token * H, H, z.x.data() + j * H);
        if (fp8_tokens) std::copy_n(in.x_scales.data() + ref.token * S, S, z.sc.data() + j * S);
      }
      TokenRows rows;
      rows.x = z.x.data();
      rows.scales = fp8_tokens ? z.sc.data() : nullptr;
      rows.input_weights = t.input_weights ? t.input_weights + j0 : nullptr;
      rows.rows = n;
      if (!t.out_rows) {
        run_expert(z.prepared, rows, t.options, out + j0 * H, &z.ws);
        continue;
      }
      std::vector<T>& y = [&]() -> std::vector<T>& {
        if constexpr (sizeof(T) == 8) return z.y64;
        else return z.y32;
      }();
      y.resize(static_cast<std::size_t>(n) * H);
      run_expert(z.prepared, rows, t.options, y.data(), &z.ws);
      for (std::int64_t j = 0; j < n; ++j) std::copy_n(y.data() + j * H, H, static_cast<T*>(t.out_rows[j0 + j]));
    }
  }

  const Trace& trace_;
  const WeightProvider& weights_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Scratch>> scratch_;
};

}  // namespace

std::unique_ptr<ExpertBackend> make_cpu_backend(const Trace& trace, const WeightProvider& weights) {
  return std::make_unique<CpuBackend>(trace, weights);
}

}  // namespace moesim
