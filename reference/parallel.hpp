#pragma once
// The reference's thread pool: items [0, n) taken from a shared counter by `threads` workers.
// Callers make each item write only its own outputs, so results never depend on the thread
// count or on which thread ran what. The lowest-indexed failure is rethrown, whatever ran first.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moesim {

template <class Fn>
void parallel_items(std::size_t n, int threads, Fn fn) {
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::size_t failed_at = n;
  std::exception_ptr failure;
  auto worker = [&] {
    for (std::size_t i = next++; i < n; i = next++) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (i < failed_at) failed_at = i, failure = std::current_exception();
      }
    }
  };
  const int t = std::max(1, std::min<int>(threads, static_cast<int>(std::max<std::size_t>(n, 1))));
  std::vector<std::thread> pool;
  for (int i = 1; i < t; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace moesim
