#include "fuzz_commands.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "command.hpp"

namespace moesim::fuzz {

namespace {

[[noreturn]] void finding(const std::vector<std::string>& args, const std::string& what) {
  std::string line = "moesim";
  for (const auto& a : args) line += " " + a;
  std::fprintf(stderr, "FINDING: %s: %s\n", line.c_str(), what.c_str());
  std::abort();
}

// Commands print reports on stdout; a fuzzer's output is its own progress lines.
struct QuietStdout {
  QuietStdout() { std::cout.rdbuf(sink.rdbuf()); }
  std::ofstream sink{"/dev/null"};
};

}  // namespace

const std::string& work_dir() {
  static const QuietStdout quiet;
  static const std::string dir = [] {
    std::string t = (std::filesystem::temp_directory_path() / "moesim-fuzz-XXXXXX").string();
    if (!::mkdtemp(t.data())) std::abort();
    return t;
  }();
  return dir;
}

void write_input(const std::uint8_t* data, std::size_t size, const std::string& path) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!f) std::abort();
}

bool run(const std::vector<std::string>& args, const std::string& input, const std::string& output) {
  std::ostringstream err;
  const cli::Outcome r = cli::dispatch(args, err);
  const std::string message = err.str();
  switch (r.kind) {
    case cli::Outcome::finished:
      // diagnose also exits 3 (buffers consistent, consumer untested) and 4 (undecided).
      if (r.code != 0 && r.code != 1 && !(args.front() == "diagnose" && (r.code == 3 || r.code == 4)))
        finding(args, "exit " + std::to_string(r.code) + " without an error");
      return true;
    case cli::Outcome::out_of_memory:
    case cli::Outcome::internal_error:
      finding(args, message);
    case cli::Outcome::bad_input:
      break;
  }
  if (message.empty() || message.find('\n') != message.size() - 1) finding(args, "not one line: " + message);
  if (message.find(input) == std::string::npos) finding(args, "the error does not name the input: " + message);
  if (!output.empty() && std::filesystem::exists(output)) finding(args, "an output was left after the error");
  return false;
}

}  // namespace moesim::fuzz
