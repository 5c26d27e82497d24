// moesim: the command-line front end. The only place exceptions become exit codes.
#include <boost/program_options/errors.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>

#include <moesim/version.hpp>

#include "command.hpp"
#include "error.hpp"
#include "temp_files.hpp"

namespace moesim::cli {

namespace {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}

void usage(std::ostream& out) {
  out << "moesim " << version << ": replay expert-parallel MoE routings, compute golden outputs, find divergence\n\n"
      << "usage: moesim COMMAND [options]   (moesim COMMAND --help for its options)\n\ncommands:\n";
  auto sorted = commands();
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.name < b.name; });
  for (const auto& c : sorted) out << "  " << c.name << std::string(12 - std::min<size_t>(c.name.size(), 11), ' ') << c.summary << "\n";
}
}  // namespace

bool register_command(Command c) {
  registry().push_back(std::move(c));
  return true;
}
const std::vector<Command>& commands() { return registry(); }

}  // namespace moesim::cli

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
  const auto& cmds = commands();
  auto it = std::find_if(cmds.begin(), cmds.end(), [&](const Command& c) { return c.name == args[0]; });
  if (it == cmds.end()) {
    std::cerr << "moesim: unknown command '" << args[0] << "' (moesim --help lists them)\n";
    return 2;
  }
  try {
    return it->run(std::vector<std::string>(args.begin() + 1, args.end()));
  } catch (const UsageError& e) {
    std::cerr << "moesim " << it->name << ": " << e.what() << " (moesim " << it->name << " --help)\n";
  } catch (const boost::program_options::error& e) {
    std::cerr << "moesim " << it->name << ": " << e.what() << " (moesim " << it->name << " --help)\n";
  } catch (const moesim::Error& e) {
    std::cerr << "moesim " << it->name << ": " << e.what() << "\n";
  } catch (const std::bad_alloc&) {
    std::cerr << "moesim " << it->name << ": out of memory\n";
  } catch (const std::exception& e) {
    std::cerr << "moesim " << it->name << ": internal error: " << e.what() << "\n";
  }
  // After an error, leave without the exit handlers: HDF5's re-closes a file whose write failed
  // (full disk, file size limit) and crashes, turning exit 2 into a segfault. Outputs are
  // already closed or removed by their owners (h5::AtomicOutput), so nothing depends on them.
  std::cout.flush();
  std::cerr.flush();
  std::_Exit(2);
}
