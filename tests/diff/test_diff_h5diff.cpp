// moesim diff -d/-p counts agree with /usr/bin/h5diff's on the same files. The one definition
// that differs: moesim's max_rel and tolerance divide by |b| (the second file, torch.testing's
// "expected"), while h5diff -p, and moesim -p with it, divide by |a| (the first file).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <regex>

#include "diff.hpp"
#include "diff_fixtures.hpp"
#include "dtype.hpp"

using namespace moesim;
using namespace moesim::test;

namespace {
const char* kH5diff = "/usr/bin/h5diff";

// Deterministic values in [-1, 1).
struct Lcg {
  std::uint64_t s;
  double next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(s >> 11) / static_cast<double>(1ull << 52) * 2 - 1;
  }
};

void make_pair(const std::string& a_path, const std::string& b_path) {
  h5::File a = h5::File::create(a_path), b = h5::File::create(b_path);
  Lcg g{42};
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  {  // float32 with errors across four decades, a quarter exact
    std::vector<float> va(64 * 16), vb(va.size());
    for (size_t i = 0; i < va.size(); ++i) {
      va[i] = static_cast<float>(g.next() * 10);
      const double scale = std::pow(10.0, -1.0 - static_cast<double>(i % 4));
      vb[i] = i % 5 == 0 ? va[i] : static_cast<float>(va[i] + g.next() * scale);
    }
    a.write("/f32_noise", {64, 16}, va.data());
    b.write("/f32_noise", {64, 16}, vb.data());
  }
  {  // zeros in either file: h5diff -p's "not comparable" and both-zero cases
    std::vector<float> va{0, 0, 1, 0, 2, -3, 0, 1e-30f}, vb{0, 1, 0, -1e-6f, 2.5f, -3, 0, 0};
    a.write("/f32_zeros", {8}, va.data());
    b.write("/f32_zeros", {8}, vb.data());
    // Around DBL_EPSILON, where h5diff -p starts to call a value zero.
    std::vector<double> ta{1e-16, 2.2e-16, 2.3e-16, 0, 1e-16, 3e-16, 0, 1e-30}, tb{0, 0, 0, 3e-16, 3e-16, 4e-16, 1e-18, 0};
    a.write("/f64_tiny", {8}, ta.data());
    b.write("/f64_tiny", {8}, tb.data());
  }
  {  // NaN and Inf in one or both
    std::vector<float> va{float(nan), float(nan), 1, float(inf), float(inf), float(-inf), 5, float(inf)};
    std::vector<float> vb{float(nan), 1, float(nan), float(inf), 1, float(inf), 5, float(inf)};
    a.write("/f32_nonfinite", {8}, va.data());
    b.write("/f32_nonfinite", {8}, vb.data());
  }
  {  // float64 and int32
    std::vector<double> va(200), vb(200);
    std::vector<std::int32_t> ia(60), ib(60);
    for (size_t i = 0; i < va.size(); ++i) {
      va[i] = g.next() * 1000;
      vb[i] = va[i] * (1 + g.next() * 1e-3);
    }
    for (size_t i = 0; i < ia.size(); ++i) {
      ia[i] = static_cast<std::int32_t>(i) - 30;
      ib[i] = ia[i] + static_cast<std::int32_t>(i % 3) * (i % 2 ? 1 : -2);
    }
    a.write("/f64", {200}, va.data());
    b.write("/f64", {200}, vb.data());
    a.write("/i32", {60}, ia.data());
    b.write("/i32", {60}, ib.data());
  }
  {  // float32 differences that round when subtracted in float32
    std::vector<float> va{1, 1, 3}, vb{std::ldexp(1.0f, -30), std::ldexp(1.0f, -25), 3};
    a.write("/f32_rounding", {3}, va.data());
    b.write("/f32_rounding", {3}, vb.data());
  }
  a.close();
  b.close();
}

// h5diff's "N differences found" for one dataset.
std::uint64_t h5diff_count(const std::string& opts, const std::string& a, const std::string& b, const std::string& ds) {
  const Ran r = shell(std::string(kH5diff) + " -r " + opts + " " + a + " " + b + " " + ds + " " + ds);
  REQUIRE(r.code != 2);
  std::smatch m;
  if (std::regex_search(r.out, m, std::regex(R"((\d+) differences? found)"))) return std::stoull(m[1]);
  return 0;
}
}  // namespace

TEST_CASE("element counts agree with h5diff for exact, -d and -p comparisons") {
  if (!std::filesystem::exists(kH5diff)) {
    MESSAGE("skipped: " << kH5diff << " is absent (apt-get install hdf5-tools)");
    return;
  }
  const std::string a = tmp("h5d_a.h5"), b = tmp("h5d_b.h5");
  make_pair(a, b);
  const std::vector<std::string> datasets{"/f32_noise", "/f32_zeros", "/f32_nonfinite", "/f64", "/f64_tiny", "/i32", "/f32_rounding"};
  struct Mode {
    std::string flag;
    std::optional<double> delta, relative;
  };
  const std::vector<Mode> modes{{"", {}, {}},
                                {"-d 1e-3", 1e-3, {}},
                                {"-d 0.05", 0.05, {}},
                                {"-d 0.9999999995", 0.9999999995, {}},
                                {"-p 1e-4", {}, 1e-4},
                                {"-p 0.01", {}, 0.01},
                                {"-p 0.5", {}, 0.5},
                                {"-p 1e-20", {}, 1e-20},
                                {"-d 1e-17", 1e-17, {}}};
  std::uint64_t total_nonzero = 0;
  for (const auto& mode : modes) {
    diff::Options o;
    o.delta = mode.delta;
    o.relative = mode.relative;
    const auto r = diff::run(a, b, o);
    REQUIRE(r.datasets.size() == datasets.size());
    for (const auto& d : r.datasets) {
      const std::uint64_t theirs = h5diff_count(mode.flag, a, b, d.path);
      // Without -d/-p h5diff counts unequal elements; moesim calls that "unequal".
      const std::uint64_t ours = mode.flag.empty() ? d.metrics.differ : d.metrics.mismatched;
      INFO("h5diff " << mode.flag << " " << d.path);
      CHECK(ours == theirs);
      total_nonzero += theirs > 0;
    }
  }
  CHECK(total_nonzero > 30);
  // bf16 stored as uint16: h5diff compares the patterns, moesim --raw too.
  {
    h5::File fa = h5::File::create(tmp("h5d_bf_a.h5")), fb = h5::File::create(tmp("h5d_bf_b.h5"));
    std::vector<float> va(256), vb(256);
    Lcg g{9};
    for (size_t i = 0; i < va.size(); ++i) {
      va[i] = round_bf16(static_cast<float>(g.next() * 4));
      vb[i] = i % 3 ? va[i] : round_bf16(va[i] * 1.01f);
    }
    write_values(fa, "/bf", {16, 16}, va, DType::bf16);
    write_values(fb, "/bf", {16, 16}, vb, DType::bf16);
    fa.close();
    fb.close();
    for (const double d : {0.0, 1.0, 2.0, 40.0}) {
      diff::Options o;
      o.raw = true;
      o.delta = d;
      const auto r = diff::run(tmp("h5d_bf_a.h5"), tmp("h5d_bf_b.h5"), o);
      INFO("-d " << d);
      CHECK(r.datasets.at(0).metrics.mismatched ==
            h5diff_count("-d " + std::to_string(d), tmp("h5d_bf_a.h5"), tmp("h5d_bf_b.h5"), "/bf"));
    }
  }  // the pairs do exercise differences in most modes
  // The CLI's closing count equals h5diff's whole-file total.
  const Ran cli = run_moesim("diff -p 0.01 " + a + " " + b);
  const Ran h5 = shell(std::string(kH5diff) + " -r -p 0.01 " + a + " " + b);
  std::uint64_t sum = 0;
  const std::regex found(R"((\d+) differences? found)");
  for (auto it = std::sregex_iterator(h5.out.begin(), h5.out.end(), found); it != std::sregex_iterator(); ++it)
    sum += std::stoull((*it)[1]);
  CHECK(cli.code == 1);
  CHECK(h5.code == 1);
  CHECK(cli.out.find("\n" + std::to_string(sum) + " differences found") != std::string::npos);
}
