#pragma once
// Work that may crash inside a library (HDF5 1.10 overflows its heap or segfaults on some
// damaged files) run in a child process first, so the user still gets a one-line error.
#include <functional>
#include <string>
#include <vector>

namespace moesim::contained {

// What the child is doing, sent to the parent before each step so a crash can be named, and
// what it found, handed to the parent when the child finished.
class Progress {
 public:
  explicit Progress(int fd) : fd_(fd) {}
  void at(const std::string& what) const;
  void found(const std::string& record) const;  // any bytes

 private:
  int fd_;
};

// Runs `work` in a forked child (stderr silenced, signal handlers default). Returns the records
// the child found, in order, when it finished, whether or not `work` threw: the caller repeats
// the work and reports errors itself. Throws Error "FILE: STEP: ..." when the child died by a signal or failed, or when it
// reported no progress for `stall_seconds` (it is then killed).
std::vector<std::string> run(const std::string& file, const std::function<void(const Progress&)>& work, int stall_seconds = 120);

}  // namespace moesim::contained
