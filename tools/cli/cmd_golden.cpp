// moesim golden TRACE -o OUT.h5: the reference model's outputs for every layer and rank.
#include <algorithm>
#include <iostream>
#include <thread>

#include "backend_choice.hpp"
#include "command.hpp"
#include "golden.hpp"
#include "options.hpp"
#include "output_path.hpp"
#include "reference.hpp"
#include "trace_io.hpp"

namespace moesim::cli {
namespace {

int run_golden(const std::vector<std::string>& args) {
  po::options_description desc("Exit 0: done; 2: bad input (one line naming the file, nothing written).\n\noptions");
  desc.add_options()("trace", po::value<std::string>()->required(), "trace file")(
      "output,o", po::value<std::string>()->required(), "golden file to write")(
      "numerics", po::value<std::string>()->default_value("exact"), "exact, fp32, bf16, fp8 or hf-bf16")(
      "fp8", po::value<std::string>()->default_value("float8_e4m3fn"),
      "fp8 dispatch format when tokens are not fp8: float8_e4m3fn or float8_e4m3fnuz")(
      "threads", po::value<int>()->default_value(1), "worker threads (results do not depend on it; default with --backend gpu: every core)")(
      "backend", po::value<std::string>()->default_value("cpu"), kBackendHelp);
  po::positional_options_description pos;
  pos.add("trace", 1);
  po::variables_map vm;
  if (!parse_options("golden", "TRACE -o OUT.h5 [--numerics M] [--threads N]", desc, pos, args, vm)) return 0;
  ReferenceOptions ro;
  ro.numerics = parse_numerics(vm["numerics"].as<std::string>());
  ro.fp8_format = parse_dtype(vm["fp8"].as<std::string>());
  if (!is_fp8(ro.fp8_format)) throw UsageError("--fp8 must name an fp8 format");
  ro.threads = vm["threads"].as<int>();
  if (ro.threads < 1) throw UsageError("--threads must be at least 1");
  check_output_path(vm["output"].as<std::string>(), {vm["trace"].as<std::string>()});
  // A full read, captured side included: golden refuses every file validate refuses.
  const Trace trace = read_trace(vm["trace"].as<std::string>());
  const WeightProvider weights(trace);
  const auto backend = make_backend(vm["backend"].as<std::string>(), trace, weights);
  ro.backend = backend.get();
  // With the FFNs on the device, threads only do the host's share (outputs, combine): use every core.
  if (backend && vm["threads"].defaulted()) ro.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<LayerOutputs> outputs;
  for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) outputs.push_back(run_layer(trace, l, weights, ro));
  std::string command = "moesim golden";
  for (const auto& a : args) command += " " + a;
  const std::string out = vm["output"].as<std::string>();
  write_golden(out, trace, outputs, ro.numerics, command, backend ? backend->name() : "cpu", ro.fp8_format);
  if (backend) std::cout << backend->profile() << "\n";
  std::cout << out << ": golden outputs (" << name(ro.numerics) << ", " << (backend ? backend->name() : "cpu") << ") for " << outputs.size() << " layer(s), "
            << trace.config.num_ranks << " rank(s)\n";
  return 0;
}

const bool registered = register_command({"golden", "reference outputs of a trace", run_golden});

}  // namespace
}  // namespace moesim::cli
