#pragma once
// What every fuzz target does with one input: write it as a file and run moesim's commands on it
// in this process, exactly as the binary would (tools/cli's dispatch). A finding is anything but
// a finished command or a one-line error naming the input with nothing written: a crash or a
// sanitizer report (the sanitizers stop the process), a hang or a runaway allocation (libFuzzer's
// -timeout and -malloc_limit_mb), "out of memory", "internal error", or a message that is not one
// line naming the file. Findings abort, so libFuzzer saves the input.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moesim::fuzz {

// A folder for this process's files, created on first use.
const std::string& work_dir();
// Writes the fuzz input to `path`, replacing it.
void write_input(const std::uint8_t* data, std::size_t size, const std::string& path);
// Runs `moesim ARGS...`: true when the command finished (exit 0 or 1), false after a clean
// one-line error naming `input`. `output`, when given, must not exist after an error.
bool run(const std::vector<std::string>& args, const std::string& input, const std::string& output = {});

}  // namespace moesim::fuzz
