// Element-wise criteria and aggregate metrics of moesim diff, each checked against a value
// worked out by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <vector>
#include <limits>

#include "diff_metrics.hpp"
#include "diff_tolerance.hpp"
#include "error.hpp"

using namespace moesim;
using namespace moesim::diff;

namespace {
Comparator tolerance(DType t, Tolerance tol) { return Comparator(t, Criterion::tolerance, tol, 0, false); }
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("max and mean abs error, and max rel error divides by the second file") {
  Comparator c = tolerance(DType::f64, {0, 0});
  c.add(2, 1);    // abs 1, rel 1
  c.add(1, 2);    // abs 1, rel 0.5
  c.add(10, 10);  // abs 0
  c.add(3, 0);    // abs 3, rel inf (b = 0)
  const Metrics& m = c.metrics();
  CHECK(m.max_abs == 3);
  CHECK(m.mean_abs() == doctest::Approx(5.0 / 4));
  CHECK(std::isinf(m.max_rel));
  Comparator d = tolerance(DType::f64, {0, 0});
  d.add(2, 1);
  d.add(1, 2);
  CHECK(d.metrics().max_rel == 1);
}

TEST_CASE("the atol + rtol * |b| boundary passes, just past it fails") {
  Comparator c = tolerance(DType::f64, {0.5, 0.1});
  CHECK_FALSE(c.add(11.5, 10).mismatch);  // 1.5 <= 0.5 + 0.1 * 10
  CHECK(c.add(11.625, 10).mismatch);
  CHECK_FALSE(c.add(8.5, 10).mismatch);
  CHECK(c.add(-11.5, -10).mismatch == false);
  CHECK(c.metrics().mismatched == 1);
  CHECK(c.metrics().elements == 4);
  CHECK(c.metrics().mismatch_percent() == 25);
  CHECK(c.metrics().differ == 4);
}

TEST_CASE("torch.testing default tolerances per dtype; integers are exact") {
  CHECK(default_tolerance(DType::bf16).rtol == 1.6e-2);
  CHECK(default_tolerance(DType::bf16).atol == 1e-5);
  CHECK(default_tolerance(DType::f16).rtol == 1e-3);
  CHECK(default_tolerance(DType::f32).rtol == 1.3e-6);
  CHECK(default_tolerance(DType::f32).atol == 1e-5);
  CHECK(default_tolerance(DType::f64).atol == 1e-7);
  CHECK(default_tolerance(DType::i32).atol == 0);
  CHECK(default_tolerance(DType::i32).rtol == 0);
  Comparator c = tolerance(DType::i64, default_tolerance(DType::i32));
  CHECK(c.add(5, 6).mismatch);
  CHECK_FALSE(c.add(7, 7).mismatch);
}

TEST_CASE("ulp distance in bf16, fp16, fp32 and fp8, across zero too") {
  CHECK(ulp_distance(1.0, 1.0 + std::ldexp(1.0, -7), DType::bf16) == 1);
  CHECK(ulp_distance(1.0, 1.0 + std::ldexp(1.0, -10), DType::f16) == 1);
  CHECK(ulp_distance(1.0, std::nextafter(1.0f, 2.0f), DType::f32) == 1);
  CHECK(ulp_distance(1.0, 1.0 + 4 * std::ldexp(1.0, -23), DType::f32) == 4);
  const double tiny = std::ldexp(1.0, -133);  // smallest bf16 subnormal
  CHECK(ulp_distance(-tiny, tiny, DType::bf16) == 2);
  CHECK(ulp_distance(0.0, -0.0, DType::f32) == 0);
  CHECK(ulp_distance(1.0, 1.125, DType::e4m3) == 1);
  CHECK(ulp_distance(448, -448, DType::e4m3) == 252);
  CHECK(ulp_distance(kNaN, 1, DType::f32) == -1);
  Comparator c = tolerance(DType::bf16, {0, 0});
  c.add(1.0, 1.0 + std::ldexp(1.0, -7) * 3);
  c.add(2.0, 2.0);
  CHECK(c.metrics().max_ulp == 3);
  CHECK(tolerance(DType::i64, {0, 0}).metrics().max_ulp == -1);
}

TEST_CASE("DeepEP calc_diff and cosine similarity") {
  Comparator c = tolerance(DType::f64, {0, 0});
  c.add(1, 1);
  c.add(2, 3);
  // x' = (2, 3), y' = (2, 4): 1 - 2 * 16 / 33.
  CHECK(c.metrics().calc_diff() == doctest::Approx(1.0 / 33).epsilon(1e-12));
  CHECK(c.metrics().cosine() == doctest::Approx(7 / std::sqrt(50.0)).epsilon(1e-12));
  Comparator same = tolerance(DType::f64, {0, 0});
  same.add(0.5, 0.5);
  same.add(-3, -3);
  CHECK(same.metrics().calc_diff() == doctest::Approx(0).epsilon(1e-15));
  CHECK(same.metrics().cosine() == doctest::Approx(1));
  Comparator zeros = tolerance(DType::f64, {0, 0});
  zeros.add(0, 0);
  CHECK(zeros.metrics().cosine() == 1);
  zeros.add(0, 1);
  CHECK(zeros.metrics().cosine() == 0);
}

TEST_CASE("NaN and Inf accounting: NaN equals NaN, NaN or Inf against a number mismatches") {
  Comparator c = tolerance(DType::f32, {1, 1});
  CHECK_FALSE(c.add(kNaN, kNaN).mismatch);
  CHECK(c.add(kNaN, 1).mismatch);
  CHECK(c.add(1, kNaN).mismatch);
  CHECK_FALSE(c.add(kInf, kInf).mismatch);
  CHECK(c.add(kInf, -kInf).mismatch);
  CHECK(c.add(kInf, 5).mismatch);
  CHECK_FALSE(c.add(2, 2.5).mismatch);
  const Metrics& m = c.metrics();
  CHECK(m.nan_a == 2);
  CHECK(m.nan_b == 2);
  CHECK(m.inf_a == 3);
  CHECK(m.inf_b == 2);
  CHECK(m.nonfinite_mismatch == 4);
  CHECK(m.mismatched == 4);
  CHECK(m.finite_pairs == 1);  // only (2, 2.5) feeds the sums
  CHECK(m.mean_abs() == 0.5);
  CHECK(std::isinf(m.max_abs));
}

TEST_CASE("-d counts |a-b| > D; -p divides by the first file and a = 0 is not comparable") {
  Comparator d(DType::f64, Criterion::delta, {}, 0.1, false);
  CHECK_FALSE(d.add(1, 1.1 - 1e-9).mismatch);
  CHECK(d.add(1, 1.2).mismatch);
  CHECK_FALSE(d.add(kNaN, kNaN).mismatch);
  CHECK(d.add(kNaN, 0).mismatch);
  CHECK(d.metrics().mismatched == 2);

  Comparator p(DType::f64, Criterion::relative, {}, 0.1, false);
  CHECK(p.add(1, 1.15).mismatch);        // 0.15 / 1
  CHECK_FALSE(p.add(2, 2.15).mismatch);  // 0.075 / 2: the first file divides
  CHECK_FALSE(p.add(0, 0).mismatch);
  CHECK(p.add(0, 1e-3).mismatch);  // not comparable counts, as in h5diff
  CHECK(p.metrics().not_comparable == 1);
  CHECK(p.metrics().mismatched == 2);
  // h5diff takes magnitudes under DBL_EPSILON as zero.
  CHECK_FALSE(p.add(1e-16, 0).mismatch);
  CHECK_FALSE(p.add(0, 2e-16).mismatch);
  CHECK(p.add(1e-16, 3e-16).mismatch);  // a "zero" against a non-zero: not comparable
  CHECK(p.add(3e-16, 4e-16).mismatch);  // relative 1/3
  CHECK(p.metrics().not_comparable == 2);
  // and compares exactly when -p itself is under DBL_EPSILON.
  Comparator tiny(DType::f64, Criterion::relative, {}, 1e-20, false);
  CHECK(tiny.add(1e-30, 0).mismatch);
  CHECK_FALSE(tiny.add(2, 2).mismatch);
}

TEST_CASE("-d on float32 subtracts in float32, as h5diff does") {
  const double a = 1, b = std::ldexp(1.0, -30);
  const double delta = 0.9999999995;  // between the float32 (1) and float64 differences
  CHECK(Comparator(DType::f32, Criterion::delta, {}, delta, true).add(a, b).mismatch);
  CHECK_FALSE(Comparator(DType::f64, Criterion::delta, {}, delta, false).add(a, b).mismatch);
}

TEST_CASE("tolerance rules: globals for floats, later patterns win, files parse") {
  ToleranceRules r;
  r.atol = 0.5;
  CHECK(r.lookup("/a", DType::f32).atol == 0.5);
  CHECK(r.lookup("/a", DType::f32).rtol == 1.3e-6);
  CHECK(r.lookup("/a", DType::i32).atol == 0);  // integers stay exact under --atol
  r.rules.push_back({"*/final_out", {1, 2}});
  r.rules.push_back({"/layers/1/*", {3, 4}});
  CHECK(r.lookup("/layers/0/ranks/1/final_out", DType::bf16).rtol == 2);
  CHECK(r.lookup("/layers/1/ranks/1/final_out", DType::bf16).rtol == 4);
  CHECK(glob_match("/layers/*/ranks/?/x", "/layers/12/ranks/3/x"));
  CHECK_FALSE(glob_match("/layers/*/ranks/?/x", "/layers/12/ranks/13/x"));
  const auto rule = parse_rule("*/recv_x=0.01,0.02");
  CHECK(rule.pattern == "*/recv_x");
  CHECK(rule.tol.atol == 0.01);
  CHECK(rule.tol.rtol == 0.02);
  CHECK_THROWS_WITH_AS(parse_rule("*/recv_x=0.01"), "--tol */recv_x=0.01: expected PATTERN=ATOL,RTOL", Error);
  const std::string path = std::string(MOESIM_TEST_TMP) + "/diff_tol.txt";
  std::ofstream(path) << "# per-stage tolerances\n*/final_out 1e-2 2e-2  # loose\n\n*/recv_x 0 0\n";
  const auto rules = read_tolerance_file(path);
  REQUIRE(rules.size() == 2);
  CHECK(rules[0].tol.rtol == 2e-2);
  CHECK(rules[1].pattern == "*/recv_x");
  std::ofstream(path) << "*/final_out 1e-2\n";
  CHECK_THROWS_WITH_AS(read_tolerance_file(path), (path + ": line 1: expected PATTERN ATOL RTOL").c_str(), Error);
  std::ofstream(path) << "*/final_out 1e-2 x\n";
  CHECK_THROWS_WITH_AS(read_tolerance_file(path), (path + ": line 1: bad tolerance 'x'").c_str(), Error);
}

TEST_CASE("the five sums follow NUMERICS.md's order: four lanes per segment of 2^16 elements, segments in order") {
  // 2 segments and a partial third, values spread over 16 orders of magnitude so that another
  // order of the same terms gives other bits; every 997th pair unequal, every 1009th non-finite.
  const std::uint64_t n = 2 * Comparator::kSegment + 1003;
  std::vector<float> a(n), b(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>((i * 2654435761u) % 1000003) * std::pow(10.0f, static_cast<float>(i % 17) - 8);
    a[i] = i % 2 ? v : -v;
    b[i] = i % 997 == 3 ? a[i] * 1.5f : a[i];
    if (i % 1009 == 5) a[i] = b[i] = std::numeric_limits<float>::infinity();
  }
  // The documented order, written out.
  double done[5] = {}, lane[5][4] = {}, flat[5] = {};
  auto fold = [&] {
    for (int m = 0; m < 5; ++m) done[m] += (lane[m][0] + lane[m][1]) + (lane[m][2] + lane[m][3]), lane[m][0] = lane[m][1] = lane[m][2] = lane[m][3] = 0;
  };
  for (std::uint64_t i = 0; i < n; ++i) {
    if (i % Comparator::kSegment == 0 && i != 0) fold();
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) continue;
    const double x = a[i], y = b[i], t[5] = {(x + 1) * (y + 1), (x + 1) * (x + 1) + (y + 1) * (y + 1), x * y, x * x, y * y};
    for (int m = 0; m < 5; ++m) lane[m][i % 4] += t[m], flat[m] += t[m];
  }
  fold();
  // Through the comparator as diff feeds it: runs of equal pairs, each other pair judged alone,
  // in blocks whose edges fall anywhere.
  Comparator c = tolerance(DType::f32, {0, 0});
  for (std::uint64_t start = 0, block = 1; start < n; start += block, block = block * 3 % 40009 + 1) {
    const std::uint64_t len = std::min(block, n - start);
    for (std::uint64_t i = 0; i < len;) {
      i += c.add_equal_run(&a[start + i], &b[start + i], len - i);
      if (i < len) c.add(a[start + i], b[start + i]), ++i;
    }
  }
  const Metrics m = c.metrics();
  CHECK(m.elements == n);
  const double got[5] = {m.sum_xy1, m.sum_sq1, m.sum_ab, m.sum_aa, m.sum_bb};
  bool order_matters = false;
  for (int k = 0; k < 5; ++k) {
    CAPTURE(k);
    CHECK(std::memcmp(&got[k], &done[k], sizeof(double)) == 0);
    order_matters = order_matters || flat[k] != done[k];
  }
  CHECK(order_matters);  // the data tells the documented order from element order
}
