// moesim bench gpu: the GPU backend against the hardware's limits and the CPU, side by side in one
// run: an FMA-bound kernel's rate (the core's peak), the deterministic GEMM at the shapes one
// expert of the layer gets, and a whole layer (DeepSeek-V3 by default: 8 ranks x 4096 tokens,
// E=256, top-8, H=7168, I=2048, one shared expert) on the GPU and on the CPU reference, with
// the two results compared bit for bit and the host's peak memory.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
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
#include "agreement.hpp"
#include "fast_layer.hpp"
#include "gpu_bench.hpp"
#include "gpu_backend.hpp"
#include "run_to_run.hpp"
#endif

namespace moesim::cli {

#ifdef MOESIM_HAVE_GPU
namespace {

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


double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The same layer in PyTorch on this GPU (tools/bench/torch_moe_layer.py): the transformers-style
// eager loop and torch._grouped_mm, on moesim's routing. Returns the script's lines.
std::vector<std::string> torch_layer(const std::string& python, const Trace& trace, int reps) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers[0];
  const std::string path = "/tmp/moesim-bench-routing-" + std::to_string(::getpid()) + ".bin";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return {"cannot write " + path};
    for (const RankInput& in : layer.ranks) std::fwrite(in.topk_ids.data(), 4, in.topk_ids.size(), f);
    for (const RankInput& in : layer.ranks) std::fwrite(in.topk_weights.data(), 4, in.topk_weights.size(), f);
    std::fclose(f);
  }
  std::int64_t T = 0;
  for (const RankInput& in : layer.ranks) T += in.num_tokens;
  const double scale = c.topk_weights_include_scaling ? 1.0 : c.routed_scaling_factor;
  const std::string cmd = python + " " + MOESIM_SOURCE_DIR + "/tools/bench/torch_moe_layer.py " + path + " " +
                          std::to_string(T) + " " + std::to_string(c.top_k) + " " + std::to_string(c.num_experts) +
                          " " + std::to_string(c.hidden) + " " + std::to_string(c.intermediate) + " " +
                          std::to_string(c.num_shared_experts) + " " + std::to_string(c.shared_intermediate) + " " +
                          std::to_string(scale) + " " + std::to_string(reps) + " 2>&1";
  std::vector<std::string> lines;
  if (std::FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) {
      std::string l = buf;
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      lines.push_back(l);
    }
    ::pclose(p);
  }
  std::remove(path.c_str());
  return lines;
}

double torch_ms(const std::vector<std::string>& lines, const std::string& key) {
  for (const std::string& l : lines)
    if (l.rfind(key + " ", 0) == 0) return std::atof(l.c_str() + key.size() + 1);
  return 0;
}

struct FastFigures {
  double layer_ms = 0, gemm1_ms = 0;
  LayerOutputs outputs;
};

// Fast mode on the layer: stage times against the copy and GEMM limits measured now, the
// PyTorch versions, and the run-to-run changes of the ordered and the atomic combine.
FastFigures bench_fast(const Trace& trace, const WeightProvider& weights, int reps, const std::string& python) {
  const TraceConfig& c = trace.config;
  FastFigures out;
  std::printf("fast mode (vendor BLAS bf16 GEMMs, fp32 accumulation; the whole layer on the device), median of %d:\n",
              reps);
  gpu::FastTimes t;
  RunToRun ordered_changes;
  // One layer for both combines: the weights (22.5 GB at production size) are uploaded once.
  gpu::FastLayer layer(trace, weights, 0, gpu::FastCombine::ordered);
  {
    layer.run();  // warm-up
    std::vector<gpu::FastTimes> runs;
    for (int i = 0; i < reps; ++i) runs.push_back(layer.run());
    const auto med = [&](double gpu::FastTimes::*f) {
      std::vector<double> v;
      for (const auto& r : runs) v.push_back(r.*f);
      return median_of(v);
    };
    t = runs[0];
    for (double gpu::FastTimes::*f : {&gpu::FastTimes::dispatch_ms, &gpu::FastTimes::gemm1_ms,
                                      &gpu::FastTimes::activation_ms, &gpu::FastTimes::gemm2_ms,
                                      &gpu::FastTimes::shared_ms, &gpu::FastTimes::combine_ms, &gpu::FastTimes::total_ms})
      t.*f = med(f);
    out.outputs = layer.outputs(false);
    for (int i = 0; i < 2; ++i) {
      layer.run();
      ordered_changes.add(out.outputs, layer.outputs(false), Numerics::bf16);
    }
  }
  const double copy = gpu::copy_tb_per_s(static_cast<std::size_t>(t.dispatch_bytes / 2), reps);
  const double peak = gpu::blas_gemm_tflops(8192, 8192, 8192, reps);
  const double one1 = gpu::blas_gemm_tflops(t.rows, is_gated(c.activation) ? 2 * c.intermediate : c.intermediate,
                                            c.hidden, reps);
  const double one2 = gpu::blas_gemm_tflops(t.rows, c.hidden, c.intermediate, reps);
  const double f1 = 2.0 * t.rows * c.hidden * (is_gated(c.activation) ? 2 * c.intermediate : c.intermediate);
  const double f2 = 2.0 * t.rows * c.hidden * c.intermediate;
  const double one_ms = (f1 / one1 + f2 / one2) * 1e-9;  // the two GEMMs as one call each, same FLOPs
  const double grouped = (f1 + f2) / (t.gemm1_ms + t.gemm2_ms) * 1e-9;
  std::printf("  limits measured now: device-to-device copy %.2f TB/s (read + written), bf16 GEMM 8192^3 %.1f TFLOP/s\n",
              copy, peak);
  std::printf("  dispatch   %8.3f ms  %5.2f TB/s  %.2f of the copy (%.2f GB of bf16 rows read and written)\n",
              t.dispatch_ms, t.dispatch_bytes / t.dispatch_ms * 1e-9, t.dispatch_bytes / t.dispatch_ms * 1e-9 / copy,
              t.dispatch_bytes * 1e-9);
  std::printf("  combine    %8.3f ms  %5.2f TB/s  %.2f of the copy (ordered: each token's slots in ascending order)\n",
              t.combine_ms, t.combine_bytes / t.combine_ms * 1e-9, t.combine_bytes / t.combine_ms * 1e-9 / copy);
  std::printf("  expert GEMMs %6.3f ms  %6.1f TFLOP/s  %.2f of one vendor GEMM per stage with the same FLOPs "
              "(%.1f TFLOP/s), %.2f of the 8192^3 GEMM\n",
              t.gemm1_ms + t.gemm2_ms, grouped, grouped / ((f1 + f2) / one_ms * 1e-9), (f1 + f2) / one_ms * 1e-9,
              grouped / peak);
  std::printf("  activation %8.3f ms; shared experts %.3f ms\n", t.activation_ms, t.shared_ms);
  std::printf("  layer      %8.3f ms  %6.1f TFLOP/s effective\n", t.total_ms, t.flops / t.total_ms * 1e-9);
  out.layer_ms = t.total_ms;
  out.gemm1_ms = t.gemm1_ms;
  if (python != "none") {
    const auto lines = torch_layer(python, trace, reps);
    const double eager = torch_ms(lines, "eager_ms"), grouped_mm = torch_ms(lines, "grouped_ms");
    if (eager > 0) {
      std::printf("  PyTorch eager (transformers' loop over experts, index_add_) %8.2f ms: fast mode %.2fx faster\n",
                  eager, eager / t.total_ms);
      if (grouped_mm > 0)
        std::printf("  PyTorch torch._grouped_mm                                  %8.2f ms: fast mode %.2fx faster\n",
                    grouped_mm, grouped_mm / t.total_ms);
    }
    for (const std::string& l : lines)
      if (l.rfind("eager_ms ", 0) != 0 && (l.rfind("grouped_ms ", 0) != 0 || grouped_mm == 0))
        std::printf("  (torch: %s)\n", l.c_str());
  }
  RunToRun atomic_changes;
  {
    layer.set_combine(gpu::FastCombine::atomic);
    const gpu::FastTimes a = layer.run();
    const LayerOutputs first = layer.outputs(false);
    for (int i = 1; i < std::max(reps, 3); ++i) {
      layer.run();
      atomic_changes.add(first, layer.outputs(false), Numerics::bf16);
    }
    std::printf("  atomic combine %.3f ms (layer %.3f ms); run to run over %d runs: %s\n", a.combine_ms, a.total_ms,
                std::max(reps, 3), atomic_changes.text().c_str());
  }
  std::printf("  ordered combine, run to run over 3 runs: %s\n", ordered_changes.text().c_str());
  return out;
}

// The same layer with numerics fp8 and e4m3 weights: the routed GEMM1 on the block-scaled fp8
// GEMM, against that GEMM alone at the same FLOPs and at 8192^3, and against the bf16 GEMM1.
void bench_fast_fp8(const Trace& bf16_trace, double bf16_gemm1_ms, int reps) {
  Trace trace = bf16_trace;
  trace.config.weight_dtype = DType::e4m3;  // the seeded weights, rounded to e4m3
  const WeightProvider weights(trace);
  const TraceConfig& c = trace.config;
  gpu::FastLayer layer(trace, weights, 0, gpu::FastCombine::ordered, 0, Numerics::fp8);
  layer.run();  // warm-up
  std::vector<double> g1, total, disp;
  for (int i = 0; i < reps; ++i) {
    const gpu::FastTimes t = layer.run();
    g1.push_back(t.gemm1_ms), total.push_back(t.total_ms), disp.push_back(t.dispatch_ms);
  }
  const gpu::FastTimes t = layer.run();
  const int rows1 = is_gated(c.activation) ? 2 * c.intermediate : c.intermediate;
  const double f1 = 2.0 * t.rows * c.hidden * rows1, ms = median_of(g1);
  const double one = gpu::blas_fp8_gemm_tflops(t.rows, rows1, c.hidden, reps);
  const double peak = gpu::blas_fp8_gemm_tflops(8192, 8192, 8192, reps);
  std::printf("fast mode, fp8 (e4m3 rows with 1 x 128 scales, e4m3 w1; block-scaled fp8 GEMM1), median of %d:\n", reps);
  std::printf("  dispatch   %8.3f ms  (%.2f GB of codes and scales read and written)\n", median_of(disp),
              t.dispatch_bytes * 1e-9);
  std::printf("  GEMM1      %8.3f ms  %6.1f TFLOP/s  %.2f of one block-scaled fp8 GEMM with the same FLOPs (%.1f), "
              "%.2f of its 8192^3 (%.1f TFLOP/s); bf16 GEMM1 %.3f ms (%.2fx)\n",
              ms, f1 / ms * 1e-9, f1 / ms * 1e-9 / one, one, f1 / ms * 1e-9 / peak, peak, bf16_gemm1_ms,
              bf16_gemm1_ms / ms);
  std::printf("  layer      %8.3f ms\n", median_of(total));
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
  g.num_shared_experts = vm["shared-experts"].as<int>();
  g.routed_scaling_factor = 2.5;
  const Trace trace = generate(g);  // weights generated from the seed, as seed-only traces are
  const WeightProvider weights(trace);
  const double pairs = static_cast<double>(R) * T * K, tokens = static_cast<double>(R) * T;
  const int S = g.num_shared_experts;
  const double flops = 6.0 * H * I * (pairs + tokens * S);  // shared experts have I columns too (gen's default)
  std::printf("layer: %d ranks x %d tokens, E=%d, top-%d, H=%d, I=%d, %d shared expert(s), %s, %.2e FLOPs\n", R, T, E,
              K, H, I, S, name(numerics).data(), flops);

  FastFigures fast;
  const bool fast_mode = numerics == Numerics::bf16 && gpu::vendor_blas_built();
  if (fast_mode) {
    fast = bench_fast(trace, weights, reps, vm["torch"].as<std::string>());
    if (H % 128 == 0) bench_fast_fp8(trace, fast.gemm1_ms, reps);
  }
  else std::printf("fast mode: not measured (%s)\n", gpu::vendor_blas_built() ? "measured with --numerics bf16: the bf16 layer, then its fp8 GEMM1" : "no vendor BLAS in this build");
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
  if (fast_mode) {
    std::vector<sim::RankRun> runs(fast.outputs.ranks.size());
    for (std::size_t r = 0; r < runs.size(); ++r) runs[r].final_out = fast.outputs.ranks[r].final_out;
    const sim::Agreement a = sim::compare_final(runs, on_gpu, trace, 0, Numerics::bf16, sim::CombineModel::weighted);
    std::printf("  fast mode: %.3f ms on the device against the deterministic mode's %.2f s (%.0fx); its final_out "
                "against the deterministic bf16 one: %s, max |diff| %.3g\n",
                fast.layer_ms, t_gpu, t_gpu * 1e3 / fast.layer_ms, a.verdict().c_str(), a.max_abs);
  }
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
