// moesim bench CASE: speed figures measured side by side in one run (never timed tests).
//   reference: the reference's expert FFN on DeepSeek-V3 expert shapes against one core's measured
//   peak, OpenBLAS on the same GEMMs and one Eigen GEMM of the same total FLOPs, at several tokens
//   per expert.
//   routing: routing-only statistics at scale (bench_routing.cpp).
//   diff: moesim diff against a plain read of the same datasets and h5diff (bench_diff.cpp).
//   gpu: the GPU backend against the device's FMA peak and the CPU reference (bench_gpu.cpp);
//   --ranks, --experts, --numerics and --threads default to 8, 256, bf16 and every core there.
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <time.h>

#if MOESIM_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);  // not in every cblas.h
extern "C" char* openblas_get_corename();
#endif

#include "bench.hpp"
#include "gemm.hpp"
#include "command.hpp"
#include "expert.hpp"
#include "options.hpp"
#include "parallel.hpp"
#include "random.hpp"

namespace moesim::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds of the whole process: on a machine shared with other jobs, time spent descheduled
// does not count, so the ratio stays meaningful under load.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double wall = 1e300, cpu = 1e300;  // best of the runs so far, seconds
  void run(const std::function<void()>& fn) {
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    fn();
    cpu = std::min(cpu, cpu_seconds() - c0);
    wall = std::min(wall, seconds_since(t0));
  }
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      out.push_back(std::stoi(item));
    } catch (...) {
      throw UsageError("bad number '" + item + "' in list");
    }
    if (out.back() < 1) throw UsageError("list values must be positive");
  }
  return out;
}

int bench_reference(const po::variables_map& vm) {
  const int H = vm["hidden"].as<int>(), I = vm["intermediate"].as<int>();
  const int experts = vm["experts"].as<int>(), threads = vm["threads"].as<int>(), reps = vm["reps"].as<int>();
  const Numerics numerics = parse_numerics(vm["numerics"].as<std::string>());
  if (is_f64(numerics)) throw UsageError("bench reference compares float GEMMs: use fp32, bf16 or fp8");
  const std::vector<int> sizes = parse_list(vm["tokens"].as<std::string>());
  GeneratorSpec spec;
  spec.seed = 1;

  // Weights generated and packed once; generation is timed apart (a golden run pays it per expert).
  std::vector<PreparedExpert> prepared;
  double gen_s = 0, pack_s = 0;
  for (int e = 0; e < experts; ++e) {
    ExpertMatrices m;
    m.hidden = H, m.inter = I, m.gated = true;
    m.w1.resize(static_cast<std::size_t>(2) * I * H);
    m.w2.resize(static_cast<std::size_t>(H) * I);
    auto t0 = Clock::now();
    const auto stream = [&](TensorKind kind) {
      return stream_of(spec.seed, {static_cast<std::uint64_t>(kind), 0, static_cast<std::uint64_t>(e)});
    };
    fill_generated(m.w1.data(), m.w1.size(), spec, stream(TensorKind::w1), 1 / std::sqrt(double(H)), DType::bf16);
    fill_generated(m.w2.data(), m.w2.size(), spec, stream(TensorKind::w2), 1 / std::sqrt(double(I)), DType::bf16);
    gen_s += seconds_since(t0);
    t0 = Clock::now();
    prepared.emplace_back(m, Activation::silu_gated, numerics);
    pack_s += seconds_since(t0);
  }
  ExpertOptions eo;
  eo.numerics = numerics;
  eo.token_dtype = DType::bf16;

  Eigen::setNbThreads(1);
  const Eigen::MatrixXf b = Eigen::MatrixXf::Random(H, 3 * I);
#if MOESIM_HAVE_OPENBLAS
  openblas_set_num_threads(1);
  std::vector<float> w1(static_cast<std::size_t>(2) * I * H, 0.01f), w2(static_cast<std::size_t>(H) * I, 0.01f);
#endif
  const CorePeak peak = core_peak();
  // The kernel's ceiling: FMA where it fuses (bf16 operands on AVX2), a multiply and an add elsewhere.
  const bool avx2 = gemm::active_isa() == gemm::Isa::avx2;
  const double ceiling = !avx2 ? peak.sse2_muladd : numerics == Numerics::bf16 ? peak.avx2_fma : peak.avx2_muladd;
  std::printf("bench reference: H=%d I=%d silu_gated, %d expert(s), numerics %s, %d thread(s), best of %d\n", H, I,
              experts, std::string(name(numerics)).c_str(), threads, reps);
  std::printf("  GEMM kernel %s; one core's fp32 peak: SSE2 mul+add %.1f, AVX2 mul+add %.1f, AVX2 FMA %.1f GFLOP/s\n"
              "  (the %s column is against %.1f, the multiply-add peak where the kernel fuses, else mul+add,\n"
              "  both with the kernel's 12 accumulators; every GFLOP/s below is per second of CPU time, so other jobs on\n"
              "  the machine do not skew the ratios)\n",
              gemm::name(gemm::active_isa()), peak.sse2_muladd, peak.avx2_muladd, peak.avx2_fma, "\"of peak\"", ceiling);
#if MOESIM_HAVE_OPENBLAS
  // Its kernel depends on the core it recognises (OPENBLAS_CORETYPE overrides): say which ran.
  std::printf("  OpenBLAS: the same two fp32 GEMMs per expert, one thread, kernels for core '%s'\n",
              openblas_get_corename());
#endif
  std::printf("  weight generation %.3f s/expert, first packing %.3f s/expert (page faults included)\n"
              "  neither is in the figures below\n",
              gen_s / experts, pack_s / experts);
  std::printf("  %8s %12s %8s %14s %10s %14s %10s\n", "tok/exp", "ref GFLOP/s", "of peak", "openblas", "ref/blas",
              "eigen GFLOP/s", "ref/eigen");
  for (int n : sizes) {
    std::vector<float> x(static_cast<std::size_t>(n) * H);
    fill_generated(x.data(), x.size(), spec, stream_of(2, {std::uint64_t(n)}), 1.0, DType::bf16);
    std::vector<std::vector<float>> y(experts, std::vector<float>(x.size()));
    std::vector<ExpertWorkspace> ws(threads);  // reused across runs, as the reference does across experts
    const double flops = 6.0 * H * I * n * experts;
    auto run_ref = [&] {  // the reference's own pool: one expert per work item
      parallel_items(static_cast<std::size_t>(experts), threads, [&](std::size_t e, int worker) {
        TokenRows tr;
        tr.x = x.data();
        tr.rows = n;
        run_expert(prepared[e], tr, eo, y[e].data(), &ws[worker]);
      });
    };
    const Eigen::MatrixXf a = Eigen::MatrixXf::Random(static_cast<Eigen::Index>(n) * experts, H);
    Eigen::MatrixXf c(a.rows(), b.cols());
    auto run_eigen = [&] { c.noalias() = a * b; };
    Timing ref, eig, blas;
#if MOESIM_HAVE_OPENBLAS
    // The same two GEMMs per expert in fp32 (OpenBLAS has no bf16 GEMM on AVX2), single-threaded.
    std::vector<float> g(static_cast<std::size_t>(n) * 2 * I), out(static_cast<std::size_t>(n) * H);
    auto run_blas = [&] {
      for (int e = 0; e < experts; ++e) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 2 * I, H, 1.0f, x.data(), H, w1.data(), H, 0.0f,
                    g.data(), 2 * I);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, H, I, 1.0f, g.data(), 2 * I, w2.data(), I, 0.0f,
                    out.data(), H);
      }
    };
#endif
    for (int r = 0; r < reps; ++r) {  // interleaved, so load from other jobs hits all alike
      ref.run(run_ref);
      eig.run(run_eigen);
#if MOESIM_HAVE_OPENBLAS
      blas.run(run_blas);
#endif
    }
    const double ref_g = flops / ref.cpu * 1e-9, eig_g = flops / eig.cpu * 1e-9;  // per core: CPU time sums threads
    const double blas_g = blas.cpu < 1e300 ? flops / blas.cpu * 1e-9 : 0;
    std::printf("  %8d %12.2f %8.3f %14s %10s %14.2f %10.3f\n", n, ref_g, ref_g / ceiling,
                blas_g ? std::to_string(blas_g).substr(0, 7).c_str() : "(absent)",
                blas_g ? std::to_string(ref_g / blas_g).substr(0, 5).c_str() : "", eig_g, ref_g / eig_g);
  }
  return 0;
}

int run_bench(const std::vector<std::string>& args) {
  const std::map<std::string, std::function<int(const po::variables_map&)>> cases = {
      {"reference", bench_reference},
      {"routing", bench_routing},
      {"diff", bench_diff},
      {"gpu", bench_gpu},
      {"diagnose", bench_diagnose},
  };
  po::options_description desc("Exit 0: done; 2: bad input (one line naming the file, nothing written).\n\noptions");
  desc.add_options()("case", po::value<std::string>()->required(), "what to measure: reference, routing, diff, gpu or diagnose")(
      "tokens", po::value<std::string>()->default_value("16,32,64,128,256"), "tokens per expert, comma-separated")(
      "experts", po::value<int>()->default_value(2), "experts per measurement")(
      "hidden", po::value<int>()->default_value(7168), "H")("intermediate", po::value<int>()->default_value(2048), "I")(
      "numerics", po::value<std::string>()->default_value("fp32"), "fp32, bf16 or fp8")(
      "threads", po::value<int>()->default_value(1), "reference threads (the Eigen GEMM uses one)")(
      "reps", po::value<int>()->default_value(3), "repetitions; the best is kept")(
      "ranks", po::value<int>()->default_value(1024), "routing: ranks R (E = 8 R experts)")(
      "rank-tokens", po::value<int>()->default_value(4096), "routing: tokens per rank")(
      "top-k", po::value<int>()->default_value(8), "routing and gpu: top-k")(
      "diff-mib", po::value<int>()->default_value(256), "diff: MiB of each of the two float32 datasets")(
      "dir", po::value<std::string>()->default_value(std::filesystem::temp_directory_path().string()),
      "diff: where the two files are written (removed afterwards)")(
      "no-cpu", po::bool_switch(), "gpu: skip the CPU reference run of the whole layer")(
      "shared-experts", po::value<int>()->default_value(1), "gpu: shared experts of the layer")(
      "torch", po::value<std::string>()->default_value("python3"),
      "gpu: the python with torch that times the same layer in PyTorch, or none")(
      "flow", po::value<std::string>()->default_value("correct"),
      "diagnose: the integration the capture comes from: correct (MORI + AITER) or all-k (the seed's consumer)")(
      "buffers-only", po::bool_switch(), "diagnose: capture the receive buffers alone, no outputs")(
      "backend", po::value<std::string>()->default_value("cpu"), "diagnose: where expert FFNs run: cpu, gpu or gpu-fast")(
      "sample-experts", po::value<int>()->default_value(0),
      "gpu: also check N evenly spaced experts' rows bitwise against the CPU kernel (cheap at full size)");
  po::positional_options_description pos;
  pos.add("case", 1);
  po::variables_map vm;
  if (!parse_options("bench", "CASE [options]", desc, pos, args, vm)) return 0;
  const auto it = cases.find(vm["case"].as<std::string>());
  if (it == cases.end()) throw UsageError("unknown bench case '" + vm["case"].as<std::string>() + "'");
  if (vm["experts"].as<int>() < 1 || vm["threads"].as<int>() < 1 || vm["reps"].as<int>() < 1)
    throw UsageError("--experts, --threads and --reps must be at least 1");
  if (vm["sample-experts"].as<int>() < 0) throw UsageError("--sample-experts must be at least 0");
  return it->second(vm);
}

const bool registered = register_command({"bench", "speed figures measured side by side", run_bench});

}  // namespace
}  // namespace moesim::cli
