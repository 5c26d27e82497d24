#pragma once
// Subcommands register themselves here; main() dispatches on the first argument.
#include <functional>
#include <string>
#include <vector>

namespace moesim::cli {

// Returns the process exit code; throws moesim::Error for bad input (main prints it, exits 2).
using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string name;
  std::string summary;
  CommandFn run;
};

bool register_command(Command c);
const std::vector<Command>& commands();

// Thrown for a bad command line: main prints the message and the command's --help hint.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace moesim::cli
