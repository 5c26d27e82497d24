#pragma once
// Rows grouped by identical bits without copying them (diagnose compares captured rows of
// 28 KB each at H = 7168, tens of thousands per rank): each row's bytes hashed once, the rows
// sorted by (hash, index), and rows of equal hash confirmed equal by memcmp.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace moesim::sim {

// first[i]: the lowest index j with row j's `bytes` bytes equal to row i's (first[i] == i for the
// first of its group). `row(i)` gives row i; the hashing runs on `threads` threads.
std::vector<std::int64_t> first_identical(std::int64_t n, std::size_t bytes,
                                          const std::function<const void*(std::int64_t)>& row, int threads);

}  // namespace moesim::sim
