// Subcommand registry and dispatch: the one place exceptions become exit codes and messages.
#include <boost/program_options/errors.hpp>
#include <algorithm>
#include <filesystem>
#include <ostream>
#include <string>

#include "command.hpp"
#include "error.hpp"

namespace moesim::cli {

namespace {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}

// Messages quote names and strings from the user's files; a newline or control character in
// one must not break the one-line error that scripts and users rely on.
std::string one_line(const std::string& m) {
  std::string out;
  for (const unsigned char c : m) {
    if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char hex[] = "0123456789abcdef";
      out += c == '\n' ? std::string("\\n") : std::string("\\x") + hex[c >> 4] + hex[c & 15];
    }
  }
  return out;
}

// Memory runs out inside computations that no longer know their file; the files on the command
// line are what the sizes came from, so the message names them.
std::string inputs_named(const std::vector<std::string>& args) {
  std::string files;
  for (size_t i = 1; i < args.size(); ++i) {
    std::error_code ec;
    const std::string& before = args[i - 1];
    if (before == "-o" || before == "--output" || before == "--report") continue;  // outputs
    if (args[i].empty() || args[i][0] == '-' || !std::filesystem::is_regular_file(args[i], ec)) continue;
    files += (files.empty() ? "" : ", ") + args[i];
  }
  return files.empty() ? "" : " (the sizes declared by " + one_line(files) + " need more memory than this machine has)";
}

}  // namespace

bool register_command(Command c) {
  registry().push_back(std::move(c));
  return true;
}
const std::vector<Command>& commands() { return registry(); }

Outcome dispatch(const std::vector<std::string>& args, std::ostream& err) {
  const auto& cmds = commands();
  auto it = std::find_if(cmds.begin(), cmds.end(), [&](const Command& c) { return !args.empty() && c.name == args[0]; });
  if (it == cmds.end()) {
    err << "moesim: unknown command '" << (args.empty() ? "" : args[0]) << "' (moesim --help lists them)\n";
    return {2, Outcome::bad_input};
  }
  const std::string name = "moesim " + it->name + ": ";
  try {
    return {it->run(std::vector<std::string>(args.begin() + 1, args.end())), Outcome::finished};
  } catch (const UsageError& e) {
    err << name << one_line(e.what()) << " (moesim " << it->name << " --help)\n";
  } catch (const boost::program_options::error& e) {
    err << name << one_line(e.what()) << " (moesim " << it->name << " --help)\n";
  } catch (const moesim::Error& e) {
    err << name << one_line(e.what()) << "\n";
  } catch (const std::bad_alloc&) {
    err << name << "out of memory" << inputs_named(args) << "\n";
    return {2, Outcome::out_of_memory};
  } catch (const std::exception& e) {
    err << name << "internal error: " << one_line(e.what()) << "\n";
    return {2, Outcome::internal_error};
  }
  return {2, Outcome::bad_input};
}

}  // namespace moesim::cli
