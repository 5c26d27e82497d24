// moesim bench gpu: the GPU backend against the hardware's limits and the CPU, side by side in one
// run: an FMA-bound kernel's rate (the core's peak), the deterministic GEMM at the shapes one
// expert of the layer gets, and a whole layer (DeepSeek-V3 by default: 8 ranks x 4096 tokens,
// E=256, top-8, H=7168, I=2048, one shared expert) on the GPU and on the CPU reference, with
// the two results compared bit for bit and the host's peak memory.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "bench.hpp"
#include "command.hpp"
#include "error.hpp"
#include "generate.hpp"
#include "parallel.hpp"
#include "reference.hpp"
#ifdef MOESIM_HAVE_GPU
#include "gpu_bench.hpp"
#include "gpu_backend.hpp"
#endif

namespace moesim::cli {

#ifdef MOESIM_HAVE_GPU
namespace {

double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is KiB on Linux
}

template <class F>
double timed(F fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The first element where the two runs differ, or "" when every rank's outputs match bitwise.
std::string first_difference(const LayerOutputs& a, const LayerOutputs& b) {
  for (std::size_t r = 0; r < a.ranks.size(); ++r)
    for (const auto& [what, x, y] : {std::tuple{"expert_out", &a.ranks[r].expert_out, &b.ranks[r].expert_out},
                                     std::tuple{"final_out", &a.ranks[r].final_out, &b.ranks[r].final_out}}) {
      const bool same = x->wide ? x->f64.size() == y->f64.size() &&
                                      std::memcmp(x->f64.data(), y->f64.data(), x->f64.size() * 8) == 0
                                : x->f32.size() == y->f32.size() &&
                                      std::memcmp(x->f32.data(), y->f32.data(), x->f32.size() * 4) == 0;
      if (!same) return "rank " + std::to_string(r) + " " + what;
    }
  return "";
}

// Bitwise check at full size without the CPU's whole layer: the CPU reference kernel on every row
// of `count` evenly spaced experts, against the slots the GPU run wrote for them. A row's bits
// depend only on the row and the expert (NUMERICS.md), so the sample is exact where it looks.
template <class T>
std::string check_sampled_experts(const Trace& trace, const WeightProvider& weights, const LayerOutputs& on_gpu,
                                  const ReferenceOptions& o, int count, std::int64_t& rows_checked) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers[0];
  const int K = c.top_k, H = c.hidden, L = c.placement.num_logical;
  const auto cpu = make_cpu_backend(trace, weights);
  std::vector<std::string> bad(count);
  std::vector<std::int64_t> rows(count);
  parallel_items(static_cast<std::size_t>(count), o.threads, [&](std::size_t i, int worker) {
    const int e = static_cast<int>(static_cast<std::int64_t>(i) * L / count);
    std::vector<TokenRef> refs;
    std::vector<int> slots;
    for (int r = 0; r < c.num_ranks; ++r)
      for (std::int64_t t = 0; t < layer.ranks[r].num_tokens; ++t)
        for (int k = 0; k < K; ++k) {
          const int id = layer.ranks[r].topk_ids[t * K + k];
          if (id >= 0 && c.logical_of(id) == e) refs.push_back({r, t}), slots.push_back(k);
        }
    ExpertTask task;
    task.expert = e;
    task.options = expert_options(c, o);
    task.rows = refs.data();
    task.num_rows = static_cast<std::int64_t>(refs.size());
    std::vector<T> y(refs.size() * H);
    cpu->run(task, y.data(), worker);
    rows[i] = task.num_rows;
    for (std::size_t j = 0; j < refs.size() && bad[i].empty(); ++j) {
      const Values& v = on_gpu.ranks[refs[j].rank].expert_out;
      const T* g;
      if constexpr (std::is_same_v<T, double>) g = v.f64.data();
      else g = v.f32.data();
      if (std::memcmp(g + (refs[j].token * K + slots[j]) * H, y.data() + j * H, sizeof(T) * H) != 0)
        bad[i] = "expert " + std::to_string(e) + " rank " + std::to_string(refs[j].rank) + " token " +
                 std::to_string(refs[j].token) + " slot " + std::to_string(slots[j]);
    }
  });
  rows_checked = 0;
  for (std::int64_t n : rows) rows_checked += n;
  for (const std::string& b : bad)
    if (!b.empty()) return b;
  return "";
}

}  // namespace

int bench_gpu(const po::variables_map& vm) {
  auto value = [&](const char* key, int gpu_default) {
    return vm[key].defaulted() ? gpu_default : vm[key].as<int>();
  };
  const int R = value("ranks", 8), E = value("experts", 256), K = vm["top-k"].as<int>();
  const int H = vm["hidden"].as<int>(), I = vm["intermediate"].as<int>(), T = vm["rank-tokens"].as<int>();
  const int threads = value("threads", static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const Numerics numerics = vm["numerics"].defaulted() ? Numerics::bf16 : parse_numerics(vm["numerics"].as<std::string>());
  const int reps = vm["reps"].as<int>();

  const gpu::DeviceInfo dev = gpu::device_info(0);
  std::printf("device 0: %s, %d multiprocessors, %.1f GiB (%.1f free)\n", dev.name.c_str(), dev.multiprocessors,
              dev.total_bytes / 1073741824.0, dev.free_bytes / 1073741824.0);
  const double peak32 = gpu::fma_peak_tflops(false), peak64 = gpu::fma_peak_tflops(true);
  std::printf("FMA-bound kernel (the core's peak, measured now): fp32 %.1f TFLOP/s, fp64 %.1f TFLOP/s\n", peak32, peak64);

  // One expert of the layer gets about T * R * K / E rows.
  const std::int64_t n = std::max<std::int64_t>(1, static_cast<std::int64_t>(T) * R * K / E);
  std::printf("deterministic GEMM, %lld rows (one expert's share of the layer), median of %d:\n",
              static_cast<long long>(n), reps);
  std::printf("  %-26s %-34s %9s %12s\n", "GEMM", "mode", "TFLOP/s", "of FMA peak");
  struct Shape {
    const char* label;
    int m, k;
  };
  const Shape shapes[] = {{"GEMM1 (x w1^T, 2I outputs)", 2 * I, H}, {"GEMM2 (h w2^T, H outputs)", H, I}};
  for (const Shape& s : shapes) {
    const double fused = gpu::gemm_tflops(n, s.m, s.k, true, false, reps);
    const double plain = gpu::gemm_tflops(n, s.m, s.k, false, false, reps);
    const double f64 = gpu::gemm_tflops(n, s.m, s.k, false, true, reps);
    std::printf("  %-26s %-34s %9.1f %12.2f\n", s.label, "bf16 (exact products: FMA)", fused, fused / peak32);
    std::printf("  %-26s %-34s %9.1f %12.2f\n", "", "fp32 (rounded product, then sum)", plain, plain / peak32);
    std::printf("  %-26s %-34s %9.1f %12.2f\n", "", "exact (float64, no FMA)", f64, f64 / peak64);
  }

  GenOptions g;
  g.seed = 3;
  g.num_ranks = R;
  g.num_experts = E;
  g.top_k = K;
  g.hidden = H;
  g.intermediate = I;
  g.tokens_per_rank = T;
  g.routing = Routing::grouped;
  g.n_group = 8;
  g.topk_group = 4;
  g.scoring = Scoring::sigmoid;
  g.num_shared_experts = 1;
  g.routed_scaling_factor = 2.5;
  const Trace trace = generate(g);  // weights generated from the seed, as seed-only traces are
  const WeightProvider weights(trace);
  const double pairs = static_cast<double>(R) * T * K, tokens = static_cast<double>(R) * T;
  const double flops = 6.0 * H * I * (pairs + tokens);
  std::printf("layer: %d ranks x %d tokens, E=%d, top-%d, H=%d, I=%d, 1 shared expert, %s, %.2e FLOPs\n", R, T, E, K,
              H, I, name(numerics).data(), flops);

  ReferenceOptions o;
  o.numerics = numerics;
  o.threads = threads;
  const auto backend = gpu::make_gpu_backend(trace, weights);
  ReferenceOptions og = o;
  og.backend = backend.get();
  LayerOutputs on_gpu, on_cpu;
  const double rss0 = peak_rss_gib();
  const double t_gpu = timed([&] { on_gpu = run_layer(trace, 0, weights, og); });
  std::printf("  gpu: %8.2f s  %7.1f TFLOP/s  host peak RSS %.2f GiB (%.2f before the layer: trace and inputs)\n",
              t_gpu, flops / t_gpu * 1e-12, peak_rss_gib(), rss0);
  std::printf("       %s\n", backend->profile().c_str());
  if (const int sample = vm["sample-experts"].as<int>(); sample > 0) {
    std::int64_t rows = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string bad = is_f64(numerics) ? check_sampled_experts<double>(trace, weights, on_gpu, o, sample, rows)
                                             : check_sampled_experts<float>(trace, weights, on_gpu, o, sample, rows);
    std::printf("  full-size bitwise check, CPU kernel on every row of %d experts (%lld rows, %.1f s): %s\n", sample,
                static_cast<long long>(rows),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                bad.empty() ? "every row equal" : ("DIFFERS at " + bad).c_str());
    if (!bad.empty()) return 1;
  }
  if (vm["no-cpu"].as<bool>()) return 0;
  const double t_cpu = timed([&] { on_cpu = run_layer(trace, 0, weights, o); });
  std::printf("  cpu: %8.2f s  %7.1f TFLOP/s  (%d threads, the reference kernel)\n", t_cpu, flops / t_cpu * 1e-12,
              threads);
  const std::string diff = first_difference(on_cpu, on_gpu);
  std::printf("  gpu / cpu speedup %.1fx; outputs %s\n", t_cpu / t_gpu,
              diff.empty() ? "bitwise equal on every rank (expert_out, final_out)" : ("DIFFER first at " + diff).c_str());
  return diff.empty() ? 0 : 1;
}

#else

int bench_gpu(const po::variables_map&) {
  throw Error("bench gpu: this moesim was built without a GPU backend (configure with -DMOESIM_GPU=CUDA or HIP)");
}

#endif

}  // namespace moesim::cli
