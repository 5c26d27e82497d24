// diff's one pass (traces/diff.cpp, diff_read.cpp): blocks read ahead on a second thread, float32
// read as stored, equal pairs taken in runs. Every metric and per-row array must be what judging
// each pair through Comparator::add in element order gives, bit for bit, whatever the block size
// or storage type; and a read failure on the reading thread reaches the caller as the same Error.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "diff.hpp"
#include "diff_fixtures.hpp"
#include "diff_metrics.hpp"
#include "error.hpp"

using namespace moesim;
using moesim::test::tmp;

namespace {

constexpr std::uint64_t kRows = 37, kCols = 24;

// Values that encode (row, column), with runs of equal pairs broken by differences, NaN, +-Inf
// and signed zeros in either file.
void pair_values(std::vector<double>& a, std::vector<double>& b) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  for (std::uint64_t i = 0; i < kRows * kCols; ++i) {
    const double v = static_cast<double>(i / kCols) + static_cast<double>(i % kCols) / 32.0;
    a.push_back(v);
    b.push_back(i % 13 == 5 ? v + 0.25 * static_cast<double>(i % 5) : i % 29 == 7 ? v + 1e-3 : v);
  }
  a[3] = nan, b[3] = nan;      // equal NaNs
  a[40] = nan;                 // NaN against a number
  b[41] = inf;                 // Inf against a number
  a[42] = -inf, b[42] = -inf;  // equal infinities
  a[43] = 0.0, b[43] = -0.0;   // signed zeros: equal
}

void write(const std::string& path, const std::vector<double>& v, bool f32) {
  std::filesystem::remove(path);
  h5::File f = h5::File::create(path);
  if (f32) {
    std::vector<float> x(v.begin(), v.end());
    f.write("/x", {kRows, kCols}, x.data());
  } else {
    f.write("/x", {kRows, kCols}, v.data());
  }
  f.close();
}

void check_same(const diff::Metrics& x, const diff::Metrics& y) {
  CHECK(x.elements == y.elements);
  CHECK(x.differ == y.differ);
  CHECK(x.mismatched == y.mismatched);
  CHECK(x.finite_pairs == y.finite_pairs);
  CHECK(x.nan_a == y.nan_a);
  CHECK(x.nan_b == y.nan_b);
  CHECK(x.inf_a == y.inf_a);
  CHECK(x.inf_b == y.inf_b);
  CHECK(x.nonfinite_mismatch == y.nonfinite_mismatch);
  // Bit for bit: the same sums in the same order.
  for (auto [p, q] : {std::pair{x.max_abs, y.max_abs}, {x.sum_abs, y.sum_abs}, {x.max_rel, y.max_rel},
                      {x.max_ulp, y.max_ulp}, {x.sum_xy1, y.sum_xy1}, {x.sum_sq1, y.sum_sq1}, {x.sum_ab, y.sum_ab},
                      {x.sum_aa, y.sum_aa}, {x.sum_bb, y.sum_bb}})
    CHECK(std::memcmp(&p, &q, sizeof p) == 0);
}

}  // namespace

TEST_CASE("one pass over blocks read ahead gives every metric of judging each pair in element order") {
  std::vector<double> a, b;
  pair_values(a, b);
  for (bool f32 : {true, false}) {
    write(tmp("stream_a.h5"), a, f32);
    write(tmp("stream_b.h5"), b, f32);
    for (std::optional<double> delta : {std::optional<double>{}, std::optional<double>{0.1}}) {
      // What the pass must give: every pair through Comparator::add, in element order.
      diff::Comparator want(f32 ? DType::f32 : DType::f64,
                            delta ? diff::Criterion::delta : diff::Criterion::tolerance,
                            diff::default_tolerance(f32 ? DType::f32 : DType::f64), delta.value_or(0), f32);
      std::vector<double> row_max(kRows, 0);
      std::vector<std::int64_t> row_bad(kRows, 0);
      for (std::uint64_t i = 0; i < a.size(); ++i) {
        const double x = f32 ? static_cast<float>(a[i]) : a[i], y = f32 ? static_cast<float>(b[i]) : b[i];
        const auto e = want.add(x, y);
        if (e.differ) row_max[i / kCols] = std::max(row_max[i / kCols], e.abs);
        row_bad[i / kCols] += e.mismatch;
      }
      for (std::uint64_t block : {std::uint64_t{1}, std::uint64_t{5}, kCols, std::uint64_t{1} << 20}) {
        CAPTURE(f32);
        CAPTURE(delta.has_value());
        CAPTURE(block);
        diff::Options o;
        o.delta = delta;
        o.block_elements = block;
        const diff::Result r = diff::run(tmp("stream_a.h5"), tmp("stream_b.h5"), o);
        REQUIRE(r.datasets.size() == 1);
        const diff::DatasetResult& d = r.datasets[0];
        check_same(d.metrics, want.metrics());
        CHECK(d.row_max_abs == row_max);
        CHECK(d.row_mismatched == row_bad);
        CHECK(d.metrics.mismatched > 0);
      }
    }
  }
}

TEST_CASE("a read failure on the reading thread reaches the caller, naming the file and dataset") {
  // 4 MiB of float32 in deflated chunks of 256 KiB; bytes in the middle of the second file
  // overwritten, so one chunk fails to inflate after earlier blocks were compared.
  constexpr std::uint64_t rows = 1024, cols = 1024;
  std::vector<float> v(rows * cols);
  for (std::uint64_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 2654435761u) % 1000003) / 7.0f;
  for (const char* leaf : {"stream_big_a.h5", "stream_big_b.h5"}) {
    std::filesystem::remove(tmp(leaf));
    h5::File f = h5::File::create(tmp(leaf));
    f.write("/x", {rows, cols}, v.data());
    f.close();
  }
  {
    std::fstream f(tmp("stream_big_b.h5"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(tmp("stream_big_b.h5")) / 2));
    const std::string junk(4096, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  diff::Options o;
  o.block_elements = 1 << 16;
  try {
    diff::run(tmp("stream_big_a.h5"), tmp("stream_big_b.h5"), o);
    FAIL("a damaged chunk was read without an error");
  } catch (const Error& e) {
    const std::string what = e.what();
    CAPTURE(what);
    CHECK(what.find("stream_big_b.h5") != std::string::npos);
    CHECK(what.find("/x") != std::string::npos);
  }
}
