// moesim golden TRACE -o OUT.h5: the reference model's outputs for every layer and rank.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "backend_choice.hpp"
#include "command.hpp"
#include "error.hpp"
#include "golden.hpp"
#include "options.hpp"
#include "output_path.hpp"
#include "reference.hpp"
#include "run_to_run.hpp"
#include "trace_io.hpp"
#ifdef MOESIM_HAVE_GPU
#include "fast_layer.hpp"
#endif

namespace moesim::cli {
namespace {

struct FastRun {
  LayerOutputs outputs;
  std::string profile;
};

// One layer in the GPU's fast mode, `repeat` times on the same device buffers.
FastRun run_fast_layer(const Trace& trace, const WeightProvider& weights, int layer_pos, bool ordered, int repeat,
                       const ReferenceOptions& ro, RunToRun& changes) {
#ifdef MOESIM_HAVE_GPU
  gpu::FastLayer layer(trace, weights, layer_pos, ordered ? gpu::FastCombine::ordered : gpu::FastCombine::atomic, 0,
                       ro.numerics, ro.fp8_format);
  const gpu::FastTimes t = layer.run();
  FastRun f{layer.outputs(true), ""};
  for (int i = 1; i < repeat; ++i) {
    layer.run();
    changes.add(f.outputs, layer.outputs(false), ro.numerics);
  }
  char line[256];
  std::snprintf(line, sizeof line, "layer %d on the GPU: %.3f ms (dispatch %.3f, GEMM1 %.3f, activation %.3f, GEMM2 %.3f, shared %.3f, combine %.3f)",
                trace.layers[layer_pos].index, t.total_ms, t.dispatch_ms, t.gemm1_ms, t.activation_ms, t.gemm2_ms,
                t.shared_ms, t.combine_ms);
  f.profile = line;
  return f;
#else
  (void)trace, (void)weights, (void)layer_pos, (void)ordered, (void)repeat, (void)ro, (void)changes;
  throw Error("--backend gpu-fast: this moesim was built without a GPU backend (configure with -DMOESIM_GPU=CUDA or HIP)");
#endif
}

int run_golden(const std::vector<std::string>& args) {
  po::options_description desc("Exit 0: done; 2: bad input (one line naming the file, nothing written).\n\noptions");
  desc.add_options()("trace", po::value<std::string>()->required(), "trace file")(
      "output,o", po::value<std::string>()->required(), "golden file to write")(
      "numerics", po::value<std::string>()->default_value("exact"), "exact, fp32, bf16, fp8 or hf-bf16")(
      "fp8", po::value<std::string>()->default_value("float8_e4m3fn"),
      "fp8 dispatch format when tokens are not fp8: float8_e4m3fn or float8_e4m3fnuz")(
      "threads", po::value<int>()->default_value(1), "worker threads (results do not depend on it; default with --backend gpu: every core)")(
      "backend", po::value<std::string>()->default_value("cpu"), kGoldenBackendHelp)(
      "repeat", po::value<int>()->default_value(1),
      "run every layer N times and report how many final_out elements change between runs, and by how many "
      "ulps (the outputs written are the first run's)");
  po::positional_options_description pos;
  pos.add("trace", 1);
  po::variables_map vm;
  if (!parse_options("golden", "TRACE -o OUT.h5 [--numerics M] [--threads N]", desc, pos, args, vm)) return 0;
  const std::string backend_name = vm["backend"].as<std::string>();
  const bool fast = is_fast_backend(backend_name);
  ReferenceOptions ro;
  const Numerics asked = parse_numerics(vm["numerics"].as<std::string>());
  ro.numerics = backend_numerics(backend_name, vm["numerics"].defaulted() ? std::nullopt : std::optional(asked), asked);
  const int repeat = vm["repeat"].as<int>();
  if (repeat < 1) throw UsageError("--repeat must be at least 1");
  ro.fp8_format = parse_dtype(vm["fp8"].as<std::string>());
  if (!is_fp8(ro.fp8_format)) throw UsageError("--fp8 must name an fp8 format");
  ro.threads = vm["threads"].as<int>();
  if (ro.threads < 1) throw UsageError("--threads must be at least 1");
  check_output_path(vm["output"].as<std::string>(), {vm["trace"].as<std::string>()});
  // A full read, captured side included: golden refuses every file validate refuses.
  const Trace trace = read_trace(vm["trace"].as<std::string>());
  const WeightProvider weights(trace);
  const auto backend = fast ? nullptr : make_backend(backend_name, trace, weights, ro.threads);
  ro.backend = backend.get();
  // With the FFNs on the device, threads only do the host's share (outputs, combine): use every core.
  if ((backend || fast) && vm["threads"].defaulted())
    ro.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<LayerOutputs> outputs;
  std::vector<RunToRun> changes(trace.layers.size());
  std::string profile = backend ? backend->profile() : "";
  for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) {
    if (fast) {
      const FastRun f = run_fast_layer(trace, weights, l, backend_name == "gpu-fast", repeat, ro, changes[l]);
      outputs.push_back(std::move(f.outputs));
      profile += (profile.empty() ? "" : "\n") + f.profile;
      continue;
    }
    outputs.push_back(run_layer(trace, l, weights, ro));
    for (int i = 1; i < repeat; ++i) changes[l].add(outputs.back(), run_layer(trace, l, weights, ro), ro.numerics);
  }
  if (backend) profile = backend->profile();
  const std::string used = fast ? backend_name : backend ? backend->name() : "cpu";
  std::string command = "moesim golden";
  for (const auto& a : args) command += " " + a;
  const std::string out = vm["output"].as<std::string>();
  write_golden(out, trace, outputs, ro.numerics, command, used, ro.fp8_format);
  if (!profile.empty()) std::cout << profile << "\n";
  if (repeat > 1)
    for (std::size_t l = 0; l < changes.size(); ++l)
      std::cout << "layer " << trace.layers[l].index << ", " << repeat << " runs: " << changes[l].text() << "\n";
  std::cout << out << ": golden outputs (" << name(ro.numerics) << ", " << used << ") for " << outputs.size()
            << " layer(s), " << trace.config.num_ranks << " rank(s)\n";
  return 0;
}

const bool registered = register_command({"golden", "reference outputs of a trace", run_golden});

}  // namespace
}  // namespace moesim::cli
