#pragma once
// Runs the moesim binary as a user would and captures its exit code and output (stderr
// merged into stdout), for tests of the command-line contract.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace moesim::test {

struct CliRun {
  int code;
  std::string output;
};

// `args` is shell text after the binary's name; runs inside `dir` when one is given.
inline CliRun run_moesim(const std::string& args, const std::string& dir = {}) {
  std::string cmd;
  if (!dir.empty()) {
    std::filesystem::create_directories(dir);
    cmd = "cd '" + dir + "' && ";
  }
  cmd += "'" + std::string(MOESIM_BINARY) + "' " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace moesim::test
