#include "contained.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "error.hpp"

namespace moesim::contained {

namespace {

// One message: its kind ('S' a step, 'F' a record), its length (4 bytes, little-endian), its bytes.
void send(int fd, char kind, const std::string& what) {
  std::string m(5, kind);
  const auto n = static_cast<std::uint32_t>(what.size());
  for (int i = 0; i < 4; ++i) m[static_cast<size_t>(1 + i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  m += what;
  for (size_t done = 0; done < m.size();) {
    const ssize_t w = ::write(fd, m.data() + done, m.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // the parent is gone
    done += static_cast<size_t>(w);
  }
}

}  // namespace

void Progress::at(const std::string& what) const { send(fd_, 'S', what); }
void Progress::found(const std::string& record) const { send(fd_, 'F', record); }

// Present in sanitizer builds only: the hook a fuzzer uses to save the input of a dying process.
extern "C" void __sanitizer_set_death_callback(void (*)()) __attribute__((weak));

namespace {

[[noreturn]] void child(int fd, const std::function<void(const Progress&)>& work) {
  // The parent's cleanup and crash hooks are not the child's: the parent reports its death.
  for (const int s : {SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(s, SIG_DFL);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
  const int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) ::dup2(null, STDERR_FILENO);  // a sanitizer's or the library's report is the parent's to summarise
  try {
    work(Progress(fd));
  } catch (...) {  // the parent repeats the work and reports the error with its context
  }
  ::_exit(0);  // no exit handlers: they belong to the parent's files
}

std::string signal_name(int s) {
  const char* d = ::strsignal(s);
  return "signal " + std::to_string(s) + (d ? std::string(", ") + d : "");
}

}  // namespace

std::vector<std::string> run(const std::string& file, const std::function<void(const Progress&)>& work, int stall_seconds) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(where(file) + "cannot start the checking process: " + std::strerror(errno));
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);  // nothing buffered may be written twice
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(where(file) + "cannot start the checking process: " + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    child(fds[1], work);
  }
  ::close(fds[1]);
  std::string last, pending;
  std::vector<std::string> records;
  bool stalled = false;
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    const int r = ::poll(&p, 1, stall_seconds * 1000);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      stalled = true;
      ::kill(pid, SIGKILL);
      break;
    }
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the child closed its end: it has finished or died
    pending.append(buf, static_cast<size_t>(n));
    while (pending.size() >= 5) {
      std::uint32_t len = 0;
      for (int i = 0; i < 4; ++i) len |= std::uint32_t{static_cast<unsigned char>(pending[static_cast<size_t>(1 + i)])} << (8 * i);
      if (pending.size() < 5 + std::size_t{len}) break;
      std::string what = pending.substr(5, len);
      if (pending[0] == 'S') {
        last = std::move(what);
      } else {
        records.push_back(std::move(what));
      }
      pending.erase(0, 5 + std::size_t{len});
    }
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string step = where(file, last);
  if (stalled)
    throw Error(step + "the HDF5 library made no progress reading it for " + std::to_string(stall_seconds) +
                " s (a damaged file can make it loop)");
  if (WIFSIGNALED(status))
    throw Error(step + "the HDF5 library crashed reading it (" + signal_name(WTERMSIG(status)) + "): the file is damaged");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error(step + "the HDF5 library failed reading it (a memory error, exit " + std::to_string(WEXITSTATUS(status)) +
                "): the file is damaged");
  return records;
}

}  // namespace moesim::contained
