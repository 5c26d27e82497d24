#include "identical_rows.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "parallel.hpp"

namespace moesim::sim {

namespace {

std::uint64_t mix(std::uint64_t h) {  // a 64-bit finalizer: every input bit reaches every output bit
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  return h ^ (h >> 33);
}

// Four independent lanes over the row's 8-byte words, so the loop is not one chain of multiplies.
std::uint64_t hash_row(const unsigned char* p, std::size_t bytes) {
  std::uint64_t h[4] = {0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL, 0x2545f4914f6cdd1dULL};
  std::size_t i = 0;
  for (; i + 32 <= bytes; i += 32)
    for (int l = 0; l < 4; ++l) {
      std::uint64_t w;
      std::memcpy(&w, p + i + 8 * l, 8);
      h[l] = (h[l] ^ w) * 0x100000001b3ULL;
    }
  std::uint64_t tail = 0;
  std::memcpy(&tail, p + i, std::min<std::size_t>(bytes - i, 8));
  for (i += 8; i < bytes; i += 8) {  // past the first tail word, fold the rest one by one
    std::uint64_t w = 0;
    std::memcpy(&w, p + i, std::min<std::size_t>(bytes - i, 8));
    tail = mix(tail ^ w);
  }
  return mix(mix(h[0] ^ mix(h[1])) ^ mix(h[2] ^ mix(h[3] ^ tail)) ^ bytes);
}

}  // namespace

std::vector<std::int64_t> first_identical(std::int64_t n, std::size_t bytes,
                                          const std::function<const void*(std::int64_t)>& row, int threads) {
  std::vector<std::uint64_t> h(static_cast<std::size_t>(n));
  constexpr std::int64_t kBlock = 1024;
  parallel_items(static_cast<std::size_t>((n + kBlock - 1) / kBlock), threads, [&](std::size_t b) {
    const std::int64_t i0 = static_cast<std::int64_t>(b) * kBlock;
    for (std::int64_t i = i0; i < std::min(n, i0 + kBlock); ++i)
      h[i] = hash_row(static_cast<const unsigned char*>(row(i)), bytes);
  });
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return h[a] != h[b] ? h[a] < h[b] : a < b; });
  std::vector<std::int64_t> first(static_cast<std::size_t>(n));
  std::vector<std::int64_t> reps;  // the distinct rows of one hash, lowest index first
  for (std::size_t a = 0, b; a < order.size(); a = b) {
    for (b = a + 1; b < order.size() && h[order[b]] == h[order[a]];) ++b;
    reps.clear();
    for (std::size_t q = a; q < b; ++q) {  // ascending index within one hash
      const std::int64_t i = order[q];
      auto it = std::find_if(reps.begin(), reps.end(),
                             [&](std::int64_t j) { return std::memcmp(row(j), row(i), bytes) == 0; });
      if (it == reps.end()) reps.push_back(i), first[i] = i;
      else first[i] = *it;
    }
  }
  return first;
}

}  // namespace moesim::sim
