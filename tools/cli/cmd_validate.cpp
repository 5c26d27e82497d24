// moesim validate TRACE: reads everything a trace holds, tensors included, and says "ok" or why not.
#include <iostream>

#include "command.hpp"
#include "options.hpp"
#include "trace_io.hpp"

namespace moesim::cli {
namespace {

int run_validate(const std::vector<std::string>& args) {
  po::options_description desc("Exit 0: done; 2: bad input (one line naming the file, nothing written).\n\noptions");
  desc.add_options()("trace", po::value<std::string>()->required(), "trace file");
  po::positional_options_description pos;
  pos.add("trace", 1);
  po::variables_map vm;
  if (!parse_options("validate", "TRACE", desc, pos, args, vm)) return 0;
  ReadReport report;
  const Trace t = read_trace(vm["trace"].as<std::string>(), {}, &report);
  for (const auto& w : report.warnings) std::cout << "warning: " << w << "\n";
  if (!report.more().empty()) std::cout << "warning: " << report.more() << "\n";
  std::cout << "ok\n";
  return 0;
}

const bool registered = register_command({"validate", "check a trace completely (exit 0 valid, 2 invalid)", run_validate});

}  // namespace
}  // namespace moesim::cli
