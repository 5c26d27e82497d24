// moesim bench diagnose: how long `moesim diagnose` takes on a capture of the seed's scale (8 ranks
// x 8192 tokens, E = 256, top-8, H = 7168, I = 2048 unless given), built in memory from a simulated
// run of the correct MORI integration or of the all-k consumer (sim/capture_fill.hpp), with the
// receive buffers alone or with every output, the expert math on the backend asked for.
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "backend_choice.hpp"
#include "bench.hpp"
#include "capture_fill.hpp"
#include "command.hpp"
#include "diagnose.hpp"
#include "error.hpp"
#include "generate.hpp"
#include "pairing.hpp"

namespace moesim::cli {
int bench_diagnose(const po::variables_map& vm) {
  const auto value = [&](const char* key, int seed_default) {
    return vm[key].defaulted() ? seed_default : vm[key].as<int>();
  };
  GenOptions g;
  g.seed = 7;
  g.num_ranks = value("ranks", 8);
  g.num_experts = value("experts", 256);
  g.top_k = vm["top-k"].as<int>();
  g.hidden = vm["hidden"].as<int>();
  g.intermediate = vm["intermediate"].as<int>();
  g.tokens_per_rank = value("rank-tokens", 8192);
  const std::string flow = vm["flow"].as<std::string>(), backend_name = vm["backend"].as<std::string>();
  if (flow != "correct" && flow != "all-k") throw UsageError("--flow is correct or all-k, not '" + flow + "'");
  const bool outputs = !vm["buffers-only"].as<bool>();
  const int threads = vm["threads"].defaulted() ? 2 : vm["threads"].as<int>();

  const auto t0 = std::chrono::steady_clock::now();
  const auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  Trace trace = generate(g);
  trace.config.mori.max_num_inp_token_per_rank = g.tokens_per_rank;
  const WeightProvider weights(trace);
  const auto backend = make_backend(backend_name, trace, weights, threads);
  sim::SimOptions o;
  o.dispatch.model = sim::DispatchModel::mori;
  o.consumer.model = flow == "all-k" ? sim::ConsumerModel::all_k : sim::default_consumer(o.dispatch.model);
  o.combine = sim::default_combine(o.dispatch.model, trace.config.mori.kernel_type);
  o.numerics = Numerics::bf16;
  o.threads = threads;
  o.backend = backend.get();
  sim::capture_run(trace, o, outputs);
  std::int64_t rows = 0;
  for (const auto& in : trace.layers[0].ranks) rows += in.captured.rows;
  std::printf("capture: %d ranks x %d tokens, E=%d, top-%d, H=%d, I=%d, bf16; MORI dispatch, %s consumer; %lld "
              "receive rows%s; built in %.1f s on %s\n",
              g.num_ranks, g.tokens_per_rank, g.num_experts, g.top_k, g.hidden, g.intermediate,
              std::string(sim::name(o.consumer.model)).c_str(), static_cast<long long>(rows),
              outputs ? " with expert_out, combine_out and final_out" : " (buffers only)", seconds_since(t0),
              backend ? backend->name().c_str() : "cpu");

  sim::DiagnoseOptions d;
  d.base.numerics = Numerics::bf16;
  d.base.threads = threads;
  d.base.backend = backend.get();
  const double rss0 = peak_rss_gib();
  sim::Diagnosis dx;
  const double took = timed([&] { dx = sim::diagnose(trace, d); });
  std::ostringstream report;
  sim::print_diagnosis(report, trace, dx, 1);
  std::printf("diagnose: %.1f s with %d thread(s), expert math on %s; %lld products computed, %lld served again; host "
              "peak RSS %.1f GiB (%.1f with the capture built); verdict exit code %d\n",
              took, threads, backend ? backend->name().c_str() : "cpu", static_cast<long long>(dx.products_computed),
              static_cast<long long>(dx.products_reused), peak_rss_gib(), rss0, sim::exit_code(dx.verdict()));
  if (backend) std::printf("  %s\n", backend->profile().c_str());
  // The report's head and its verdict: what a user reads first and last.
  std::vector<std::string> lines;
  std::istringstream in(report.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (i < 4 || i + 4 >= lines.size()) std::printf("  | %s\n", lines[i].c_str());
  return 0;
}

}  // namespace moesim::cli
