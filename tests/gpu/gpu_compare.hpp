#pragma once
// Bitwise comparison of CPU and GPU outputs that names the first differing element by its
// place (rank, row or token, slot, column), so a wrong row or a wrong rounding shows at once.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "generate.hpp"
#include "reference.hpp"

namespace moesim::test {

inline std::uint64_t bits_at(const Values& v, std::size_t i) {
  if (v.wide) {
    std::uint64_t u;
    std::memcpy(&u, &v.f64[i], sizeof u);
    return u;
  }
  std::uint32_t u;
  std::memcpy(&u, &v.f32[i], sizeof u);
  return u;
}

// "" when a and b hold the same bits; else where they first differ. `row` elements per leading
// index (H, or K * H for [T, K, H]).
inline std::string first_difference(const Values& a, const Values& b, std::size_t row, const std::string& what) {
  if (a.wide != b.wide) return what + ": one file is float64, the other float32";
  if (a.size() != b.size())
    return what + ": " + std::to_string(a.size()) + " elements against " + std::to_string(b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    if (bits_at(a, i) != bits_at(b, i))
      return what + ": first difference at row " + std::to_string(i / row) + " element " + std::to_string(i % row) +
             " (cpu " + std::to_string(a[i]) + ", gpu " + std::to_string(b[i]) + ")";
  return "";
}

#define CHECK_SAME_BITS(a, b, row, what) CHECK(::moesim::test::first_difference(a, b, row, what) == "")

// The GPU tests' generated layer: 4 ranks of 9 to 37 tokens, 12 experts, top-3, 10% -1 slots,
// shared experts of I = 40 when asked; H = 200 and I = 72 unless the test sets others.
inline GenOptions odd_sized_layer(std::uint64_t seed) {
  GenOptions g;
  g.seed = seed;
  g.num_ranks = 4;
  g.num_experts = 12;
  g.top_k = 3;
  g.hidden = 200;
  g.intermediate = 72;
  g.tokens_per_rank = 9;
  g.tokens_max = 37;
  g.sentinel_rate = 0.1;
  g.shared_intermediate = 40;
  return g;
}

// 2 ranks of 5 tokens, 4 experts, H 64, I 16: what the refusal tests need.
inline GenOptions small_layer() {
  GenOptions g;
  g.num_ranks = 2;
  g.num_experts = 4;
  g.top_k = 2;
  g.hidden = 64;
  g.intermediate = 16;
  g.tokens_per_rank = 5;
  return g;
}

}  // namespace moesim::test
