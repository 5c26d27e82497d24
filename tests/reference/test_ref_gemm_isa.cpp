// The reference GEMM gives the same bits on every instruction set: the SSE2 and AVX2 kernels
// against each other and against the contract written as a plain loop (gemm.hpp), on shapes
// that cross every blocking edge (rows per micro-kernel, panel width, depth chunk of 256, row
// block of 256, panel group of 16 panels: 96 to 384 outputs by type and instruction set).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dtype.hpp"
#include "gemm.hpp"

using namespace moesim;

namespace {

// Values that tell positions apart: row r, column c of x differ from every other by their bits.
template <class T>
std::vector<float> values(std::int64_t rows, std::int64_t cols, unsigned seed, bool bf16) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      float x = d(g) * std::ldexp(1.0f, static_cast<int>(r % 7) - 3) + 1e-3f * static_cast<float>(c % 5);
      v[static_cast<std::size_t>(r * cols + c)] = bf16 ? round_bf16(x) : x;
    }
  return v;
}

// The contract: one accumulator per output, products rounded to T, k ascending.
template <class T>
std::vector<T> contract(const std::vector<float>& x, const std::vector<float>& w, int n, int m, int k) {
  std::vector<T> out(static_cast<std::size_t>(n) * m);
  for (int r = 0; r < n; ++r)
    for (int o = 0; o < m; ++o) {
      T acc = 0;
      for (int d = 0; d < k; ++d) {
        const T p = static_cast<T>(x[r * k + d]) * static_cast<T>(w[o * k + d]);
        acc = acc + p;
      }
      out[static_cast<std::size_t>(r) * m + o] = acc;
    }
  return out;
}

template <class T>
std::vector<T> kernel(gemm::Isa isa, const std::vector<float>& x, const std::vector<float>& w, int n, int m, int k,
                      bool bf16) {
  std::vector<T> wp, xt(x.begin(), x.end());
  gemm::pack<T>(w.data(), m, k, false, wp, isa);
  const int P = gemm::panel_width<T>(isa);
  const std::int64_t ld = gemm::padded(m, P);
  std::vector<T> out(static_cast<std::size_t>(n * ld)), scratch(gemm::scratch_size<T>(n, k, isa));
  gemm::multiply<T>(xt.data(), n, k, wp, m, k, out.data(), ld, scratch.data(), bf16, isa);
  std::vector<T> c(static_cast<std::size_t>(n) * m);
  for (int r = 0; r < n; ++r)
    for (int o = 0; o < m; ++o) c[static_cast<std::size_t>(r) * m + o] = out[static_cast<std::size_t>(r * ld + o)];
  return c;
}

template <class T>
void check_shape(int n, int m, int k, unsigned& seed, bool bf16) {
  CAPTURE(n);
  CAPTURE(m);
  CAPTURE(k);
  const auto x = values<T>(n, k, seed++, bf16), w = values<T>(m, k, seed++, bf16);
  const auto want = contract<T>(x, w, n, m, k);
  const auto sse2 = kernel<T>(gemm::Isa::sse2, x, w, n, m, k, bf16);
  REQUIRE(std::memcmp(sse2.data(), want.data(), want.size() * sizeof(T)) == 0);
  if (gemm::supported(gemm::Isa::avx2)) {
    const auto v = kernel<T>(gemm::Isa::avx2, x, w, n, m, k, bf16);
    for (std::size_t i = 0; i < want.size(); ++i) {
      CAPTURE(i);  // row i / m, column i % m
      REQUIRE(std::memcmp(&v[i], &want[i], sizeof(T)) == 0);
    }
  }
}

template <class T>
void check_shapes(bool bf16) {
  if (!gemm::supported(gemm::Isa::avx2))
    MESSAGE("this CPU has no AVX2 and FMA: only the SSE2 kernel is compared with the contract");
  unsigned seed = 1;
  for (int n : {1, 3, 4, 5, 9, 130})
    for (int m : {1, 13, 24, 25, 50})
      for (int k : {1, 7, 256, 300}) check_shape<T>(n, m, k, seed, bf16);
  // Past a row block (257 rows), past a panel group on every kernel (385 outputs) and over two
  // depth chunks (513): partial sums parked and resumed across all three at once.
  check_shape<T>(257, 97, 300, seed, bf16);
  check_shape<T>(9, 385, 513, seed, bf16);
  check_shape<T>(261, 400, 257, seed, bf16);
}

}  // namespace

TEST_CASE("the float GEMM is bitwise the contract on SSE2 and AVX2") { check_shapes<float>(false); }
TEST_CASE("the float GEMM on bf16 operands, fused on AVX2, is bitwise the unfused contract") { check_shapes<float>(true); }
TEST_CASE("the double GEMM is bitwise the contract on SSE2 and AVX2") { check_shapes<double>(false); }

TEST_CASE("fusing would change the bits of operands wider than bf16, so they are never fused") {
  // The test above would not catch an AVX2 kernel that fused everything if no product rounded:
  // these float operands have 24-bit significands, whose products do round.
  if (!gemm::supported(gemm::Isa::avx2)) return;
  const int n = 4, m = 24, k = 300;
  const auto x = values<float>(n, k, 7, false), w = values<float>(m, k, 8, false);
  const auto unfused = kernel<float>(gemm::Isa::avx2, x, w, n, m, k, false);
  const auto fused = kernel<float>(gemm::Isa::avx2, x, w, n, m, k, true);
  CHECK(std::memcmp(unfused.data(), contract<float>(x, w, n, m, k).data(), unfused.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(unfused.data(), fused.data(), unfused.size() * sizeof(float)) != 0);
}

TEST_CASE("the active kernel is AVX2 exactly where the CPU has AVX2 and FMA, unless MOESIM_GEMM_ISA says") {
  const char* forced = std::getenv("MOESIM_GEMM_ISA");
  const gemm::Isa want = forced ? (std::string(forced) == "avx2" ? gemm::Isa::avx2 : gemm::Isa::sse2)
                                : (gemm::supported(gemm::Isa::avx2) ? gemm::Isa::avx2 : gemm::Isa::sse2);
  CHECK(gemm::active_isa() == want);
}
