// moesim: the command-line front end.
#include <algorithm>
#include <cstdlib>
#include <iostream>

#include <moesim/version.hpp>

#include "command.hpp"
#include "temp_files.hpp"

namespace {

void usage(std::ostream& out) {
  using namespace moesim::cli;
  out << "moesim " << moesim::version << ": replay expert-parallel MoE routings, compute golden outputs, find divergence\n\n"
      << "usage: moesim COMMAND [options]   (moesim COMMAND --help for its options)\n\ncommands:\n";
  auto sorted = commands();
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (const auto& c : sorted) out << "  " << c.name << std::string(12 - std::min<size_t>(c.name.size(), 11), ' ') << c.summary << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace moesim::cli;
  moesim::temp_files::install_signal_cleanup();  // Ctrl-C while writing leaves no OUT.tmpPID
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage(args.empty() ? std::cerr : std::cout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << "moesim " << moesim::version << "\n";
    return 0;
  }
  const Outcome r = dispatch(args, std::cerr);
  if (r.kind == Outcome::finished) return r.code;
  // After an error, leave without the exit handlers: HDF5's re-closes a file whose write failed
  // (full disk, file size limit) and crashes, turning exit 2 into a segfault. Outputs are
  // already closed or removed by their owners (h5::AtomicOutput), so nothing depends on them.
  std::cout.flush();
  std::cerr.flush();
  std::_Exit(r.code);
}
