#pragma once
// Bitwise comparison of CPU and GPU outputs that names the first differing element by its
// place (rank, row or token, slot, column), so a wrong row or a wrong rounding shows at once.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>

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

}  // namespace moesim::test
