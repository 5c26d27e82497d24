#pragma once
// Temporary output files that a signal must not leave behind: AtomicOutput registers its
// OUT.tmpPID here, and after install_signal_cleanup() a SIGINT, SIGTERM or SIGHUP unlinks every
// registered file before the process dies of that signal (exit status as if uncaught).
#include <string>

namespace moesim::temp_files {

// A slot for `path`, or -1 when all are taken (the file is then only removed by its owner).
int add(const std::string& path);
// Forgets a slot: its owner removed or renamed the file.
void drop(int slot);
void install_signal_cleanup();

// A scratch file's path, owned: the file is removed when the owner goes, and by a signal before.
class Scratch {
 public:
  explicit Scratch(std::string path) : path_(std::move(path)), slot_(add(path_)) {}
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int slot_;
};

}  // namespace moesim::temp_files
