#pragma once
// Subcommands register themselves here; main() dispatches on the first argument.
#include <functional>
#include <iosfwd>
#include <stdexcept>
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

// How a command ended: it returned its exit code, or threw and dispatch printed one line.
struct Outcome {
  int code;
  enum Kind { finished, bad_input, out_of_memory, internal_error } kind;
};
// Runs args[0] with the rest; errors become one line on `err` ("moesim CMD: ...") and code 2.
Outcome dispatch(const std::vector<std::string>& args, std::ostream& err);

// Thrown for a bad command line: main prints the message and the command's --help hint.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace moesim::cli
