#pragma once
// The reference's thread pool: items [0, n) taken from a shared counter by `threads` workers.
// Callers make each item write only its own outputs, so results never depend on the thread
// count or on which thread ran what. The lowest-indexed failure is rethrown, whatever ran first.
// fn(item) or fn(item, worker): worker in [0, threads) names the calling worker, for scratch
// buffers kept per worker.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace moesim {

// Workers parallel_items starts for n items.
inline int workers_for(std::size_t n, int threads) {
  return std::max(1, std::min<int>(threads, static_cast<int>(std::max<std::size_t>(n, 1))));
}

template <class Fn>
void parallel_items(std::size_t n, int threads, Fn fn) {
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::size_t failed_at = n;
  std::exception_ptr failure;
  auto worker = [&](int w) {
    for (std::size_t i = next++; i < n; i = next++) {
      try {
        if constexpr (std::is_invocable_v<Fn&, std::size_t, int>)
          fn(i, w);
        else
          fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (i < failed_at) failed_at = i, failure = std::current_exception();
      }
    }
  };
  const int t = workers_for(n, threads);
  std::vector<std::thread> pool;
  for (int i = 1; i < t; ++i) pool.emplace_back(worker, i);
  worker(0);
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace moesim
