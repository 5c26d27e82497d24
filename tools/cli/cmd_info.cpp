// moesim info TRACE: what a trace holds, after full validation.
#include <iostream>

#include "command.hpp"
#include "options.hpp"
#include "trace_io.hpp"

namespace moesim::cli {
namespace {

int run_info(const std::vector<std::string>& args) {
  po::options_description desc("options");
  desc.add_options()("trace", po::value<std::string>()->required(), "trace file");
  po::positional_options_description pos;
  pos.add("trace", 1);
  po::variables_map vm;
  if (!parse_options("info", "TRACE", desc, pos, args, vm)) return 0;
  ReadOptions ro;
  ro.tensors = false;
  ReadReport report;
  const Trace t = read_trace(vm["trace"].as<std::string>(), ro, &report);
  const TraceConfig& c = t.config;
  std::cout << t.path << ": moesim trace, schema v" << kSchemaVersion << "\n"
            << "  ranks " << c.num_ranks << ", experts " << c.num_experts << " (" << c.experts_per_rank()
            << " per rank, placement " << name(c.placement.kind) << "), top-" << c.top_k << "\n"
            << "  hidden " << c.hidden << ", intermediate " << c.intermediate << ", activation " << name(c.activation)
            << "\n  tokens " << name(c.token_dtype) << ", weights " << name(c.weight_dtype)
            << (t.layers.empty() || t.layers[0].weights ? " (stored)" : " (generated from seed)") << "\n"
            << "  layers " << t.layers.size() << "\n";
  for (const auto& w : report.warnings) std::cout << "  warning: " << w << "\n";
  return 0;
}

const bool registered = register_command({"info", "describe a trace", run_info});

}  // namespace
}  // namespace moesim::cli
