// moesim bench CASE: speed figures measured side by side in one run (never timed tests).
//   reference: the reference's expert FFN on DeepSeek-V3 expert shapes against one core's measured
//   peak, OpenBLAS on the same GEMMs (as loaded here, and in a child with its AVX2 kernels) and one
//   Eigen GEMM of the same total FLOPs, at several tokens per expert.
//   blas: OpenBLAS alone on those GEMMs (what bench reference runs in its child; bench_blas.cpp).
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
  const std::string child_core = have_openblas() ? vm["blas-core"].as<std::string>() : "none";
  if (child_core != "none") check_core_name(child_core);
  // The peak is measured again after every row and the highest kept: a single measurement can
  // land on a moment when other jobs share the core's caches or slow its clock.
  CorePeak peak = core_peak();
  struct Row {
    int n;
    double ref, blas, child, eigen;  // GFLOP/s per CPU second; 0: absent
  };
  std::vector<Row> rows;
  std::string child_reported;
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
    BlasGemms gemms(H, I, n);
    for (int r = 0; r < reps; ++r) {  // interleaved, so load from other jobs hits all alike
      ref.run(run_ref);
      eig.run(run_eigen);
      if (have_openblas()) blas.run([&] { gemms.run(x.data(), experts); });
    }
    // The child's reps follow this process's (a fresh OpenBLAS cannot be loaded here).
    const BlasChild child =
        child_core == "none" ? BlasChild{} : openblas_in_child(child_core, H, I, n, experts, reps);
    child_reported = child.core;
    const CorePeak again = core_peak();
    peak.sse2_muladd = std::max(peak.sse2_muladd, again.sse2_muladd);
    peak.avx2_muladd = std::max(peak.avx2_muladd, again.avx2_muladd);
    peak.avx2_fma = std::max(peak.avx2_fma, again.avx2_fma);
    // per core: CPU time sums threads
    rows.push_back({n, flops / ref.cpu * 1e-9, blas.cpu < 1e300 ? flops / blas.cpu * 1e-9 : 0, child.gflops,
                    flops / eig.cpu * 1e-9});
  }
  // The kernel's ceiling: FMA where it fuses (bf16 operands on AVX2), a multiply and an add elsewhere.
  const bool avx2 = gemm::active_isa() == gemm::Isa::avx2;
  const double ceiling = !avx2 ? peak.sse2_muladd : numerics == Numerics::bf16 ? peak.avx2_fma : peak.avx2_muladd;
  std::printf("bench reference: H=%d I=%d silu_gated, %d expert(s), numerics %s, %d thread(s), best of %d\n", H, I,
              experts, std::string(name(numerics)).c_str(), threads, reps);
  std::printf("  GEMM kernel %s; one core's fp32 peak: SSE2 mul+add %.1f, AVX2 mul+add %.1f, AVX2 FMA %.1f GFLOP/s\n"
              "  (the highest of %zu measurements, one per row and one before; the %s column is against %.1f,\n"
              "  the multiply-add peak where the kernel fuses, else mul+add, both with the kernel's 12 accumulators;\n"
              "  every GFLOP/s below is per second of CPU time, so other jobs on the machine do not skew the ratios)\n",
              gemm::name(gemm::active_isa()), peak.sse2_muladd, peak.avx2_muladd, peak.avx2_fma, rows.size() + 1,
              "\"of peak\"", ceiling);
  // Its kernels depend on the core it recognises (OPENBLAS_CORETYPE, read at load, overrides): say
  // which ran, here and in the child.
  if (have_openblas())
    std::printf("  OpenBLAS: the same two fp32 GEMMs per expert, one thread; \"openblas\" in this process, kernels for\n"
                "  core '%s'\n",
                openblas_core().c_str());
  if (child_core != "none")
    std::printf("  \"blas %s\": the same in a child process started with OPENBLAS_CORETYPE=%s per row, whose\n"
                "  OpenBLAS reports core '%s', best of %d after this process's\n",
                child_core.c_str(), child_core.c_str(), child_reported.c_str(), reps);
  std::printf("  weight generation %.3f s/expert, first packing %.3f s/expert (page faults included)\n"
              "  neither is in the figures below\n",
              gen_s / experts, pack_s / experts);
  const std::string child_col = "blas " + child_core;
  std::printf("  %8s %12s %8s %10s %9s %14s %9s %14s %10s\n", "tok/exp", "ref GFLOP/s", "of peak", "openblas",
              "ref/blas", child_col.c_str(), "ref/blas", "eigen GFLOP/s", "ref/eigen");
  const auto figure = [](double v, const char* fmt) {
    char buf[32];
    std::snprintf(buf, sizeof buf, fmt, v);
    return std::string(v > 0 ? buf : "(absent)");
  };
  for (const Row& r : rows)
    std::printf("  %8d %12.2f %8.3f %10s %9s %14s %9s %14.2f %10.3f\n", r.n, r.ref, r.ref / ceiling,
                figure(r.blas, "%.2f").c_str(), r.blas ? figure(r.ref / r.blas, "%.3f").c_str() : "",
                figure(r.child, "%.2f").c_str(), r.child ? figure(r.ref / r.child, "%.3f").c_str() : "", r.eigen,
                r.ref / r.eigen);
  return 0;
}

// OpenBLAS alone, one row of bench reference's table: what its child process runs.
int bench_blas(const po::variables_map& vm) {
  if (!have_openblas()) throw UsageError("bench blas: this build has no OpenBLAS");
  const int H = vm["hidden"].as<int>(), I = vm["intermediate"].as<int>();
  const int experts = vm["experts"].as<int>(), reps = vm["reps"].as<int>();
  const std::vector<int> sizes = parse_list(vm["tokens"].as<std::string>());
  GeneratorSpec spec;
  spec.seed = 1;
  std::printf("core %s\n", openblas_core().c_str());
  for (int n : sizes) {
    std::vector<float> x(static_cast<std::size_t>(n) * H);
    fill_generated(x.data(), x.size(), spec, stream_of(2, {std::uint64_t(n)}), 1.0, DType::bf16);
    BlasGemms gemms(H, I, n);
    Timing t;
    for (int r = 0; r < reps; ++r) t.run([&] { gemms.run(x.data(), experts); });
    std::printf("tokens %d\ngflops %.3f\n", n, 6.0 * H * I * n * experts / t.cpu * 1e-9);
  }
  return 0;
}

int run_bench(const std::vector<std::string>& args) {
  const std::map<std::string, std::function<int(const po::variables_map&)>> cases = {
      {"reference", bench_reference},
      {"blas", bench_blas},
      {"routing", bench_routing},
      {"diff", bench_diff},
      {"gpu", bench_gpu},
      {"diagnose", bench_diagnose},
  };
  po::options_description desc("Exit 0: done; 2: bad input (one line naming the file, nothing written).\n\noptions");
  desc.add_options()("case", po::value<std::string>()->required(),
                     "what to measure: reference, blas, routing, diff, gpu or diagnose")(
      "tokens", po::value<std::string>()->default_value("16,32,64,128,256"), "tokens per expert, comma-separated")(
      "experts", po::value<int>()->default_value(2), "experts per measurement")(
      "hidden", po::value<int>()->default_value(7168), "H")("intermediate", po::value<int>()->default_value(2048), "I")(
      "numerics", po::value<std::string>()->default_value("fp32"), "fp32, bf16 or fp8")(
      "threads", po::value<int>()->default_value(1), "reference threads (the Eigen GEMM uses one)")(
      "reps", po::value<int>()->default_value(3), "repetitions; the best is kept")(
      "blas-core", po::value<std::string>()->default_value("Haswell"),
      "reference: OPENBLAS_CORETYPE of the child that times OpenBLAS's kernels for that core (Haswell: AVX2), "
      "or none")(
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
