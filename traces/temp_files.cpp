#include "temp_files.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace moesim::temp_files {
namespace {

constexpr int kSlots = 32;
constexpr std::size_t kPathMax = 4096;

// A slot is claimed, then filled, then marked ready; the handler reads only ready slots, and
// only async-signal-safe calls (unlink, sigaction, raise) run inside it.
struct Slot {
  std::atomic<bool> claimed{false}, ready{false};
  char path[kPathMax];
};
Slot slots[kSlots];

extern "C" void on_signal(int sig) {
  for (Slot& s : slots)
    if (s.ready.load()) ::unlink(s.path);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);
}

}  // namespace

int add(const std::string& path) {
  if (path.size() + 1 > kPathMax) return -1;
  for (int i = 0; i < kSlots; ++i) {
    if (slots[i].claimed.exchange(true)) continue;
    std::memcpy(slots[i].path, path.c_str(), path.size() + 1);
    slots[i].ready.store(true);
    return i;
  }
  return -1;
}

void drop(int slot) {
  if (slot < 0 || slot >= kSlots) return;
  slots[slot].ready.store(false);
  slots[slot].claimed.store(false);
}

Scratch::~Scratch() {
  ::unlink(path_.c_str());
  drop(slot_);
}

void install_signal_cleanup() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

}  // namespace moesim::temp_files
