// moesim-fmath-accuracy: checks fmath::expf, fmath::tanhf and fmath::erff (traces/fmath.hpp) on
// every one of the 2^32 float inputs against the correctly rounded float of glibc's long double
// expl, tanhl and erfl, on all cores, and prints per function the largest distance in ulps and
// how many results are not the correctly rounded float (bits differ; NaN inputs must give NaN).
//
//   moesim-fmath-accuracy [--threads N] [--step S] [exp] [tanh] [erf]
//
// --step S checks every S-th bit pattern only (a quick look); the default checks all of them.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fmath.hpp"

namespace {

using moesim::hd::bits;
using moesim::hd::from_bits;

// Where the correctly rounded result is known without the reference (glibc's long double
// functions are slow there: expl of a large argument takes 0.5 us): exp(x) > 2^128 for x >= 89
// (+inf), exp(x) < 2^-150 for x <= -104 (+0); 1 - tanh|x| < 2^-25 for |x| >= 10 and
// 1 - erf|x| < 2^-25 for |x| >= 4 (+-1).
bool known_exp(float x, float& r) {
  if (x >= 89.0f) r = __builtin_inff();
  else if (x <= -104.0f) r = 0.0f;
  else return false;
  return true;
}
bool known_sign(float x, float& r, float from) {
  if (!(x >= from || x <= -from)) return false;
  r = x > 0 ? 1.0f : -1.0f;
  return true;
}
bool known_tanh(float x, float& r) { return known_sign(x, r, 10.0f); }
bool known_erf(float x, float& r) { return known_sign(x, r, 4.0f); }

float our_exp(float x) { return moesim::fmath::expf(x); }
float our_tanh(float x) { return moesim::fmath::tanhf(x); }
float our_erf(float x) { return moesim::fmath::erff(x); }
long double ref_exp(long double x) { return expl(x); }
long double ref_tanh(long double x) { return tanhl(x); }
long double ref_erf(long double x) { return erfl(x); }

struct Function {
  const char* name;
  float (*ours)(float);
  long double (*ref)(long double);
  bool (*known)(float, float&);
};

// Floats in order as integers: adjacent floats differ by 1, +0 and -0 are both 0.
std::int64_t ordered(float v) {
  const std::uint32_t u = bits(v);
  const std::int64_t mag = u & 0x7fffffffu;
  return (u >> 31) ? -mag : mag;
}

struct Tally {
  std::uint64_t checked = 0, not_rounded = 0, nan_wrong = 0;
  std::int64_t max_ulp = 0;
  float worst = 0;  // an input with the largest distance
  std::vector<std::uint32_t> examples;  // first few inputs that are not correctly rounded
};

void check_range(const Function& f, std::uint64_t begin, std::uint64_t end, std::uint64_t step, Tally& t) {
  for (std::uint64_t i = begin; i < end; i += step) {
    const float x = from_bits(static_cast<std::uint32_t>(i));
    const float y = f.ours(x);
    ++t.checked;
    if (x != x) {
      if (y == y) ++t.nan_wrong, ++t.not_rounded;
      continue;
    }
    float r;
    if (!f.known(x, r)) r = static_cast<float>(f.ref(static_cast<long double>(x)));
    if (bits(y) == bits(r)) continue;
    ++t.not_rounded;
    if (t.examples.size() < 8) t.examples.push_back(static_cast<std::uint32_t>(i));
    const std::int64_t d = (y != y) ? (std::int64_t{1} << 40) : std::llabs(ordered(y) - ordered(r));
    if (d > t.max_ulp) t.max_ulp = d, t.worst = x;
  }
}

int usage() {
  std::fprintf(stderr, "usage: moesim-fmath-accuracy [--threads N] [--step S] [exp] [tanh] [erf]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const Function all[] = {{"expf", our_exp, ref_exp, known_exp},
                          {"tanhf", our_tanh, ref_tanh, known_tanh},
                          {"erff", our_erf, ref_erf, known_erf}};
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::uint64_t step = 1;
  std::vector<Function> chosen;
  for (int a = 1; a < argc; ++a) {
    const std::string s = argv[a];
    if (s == "--threads" && a + 1 < argc) threads = std::max(1, std::atoi(argv[++a]));
    else if (s == "--step" && a + 1 < argc) step = std::max(1LL, std::atoll(argv[++a]));
    else if (s == "exp" || s == "tanh" || s == "erf") chosen.push_back(s == "exp" ? all[0] : s == "tanh" ? all[1] : all[2]);
    else return usage();
  }
  if (chosen.empty()) chosen.assign(std::begin(all), std::end(all));
  std::printf("checking %s float inputs%s on %u threads\n", step == 1 ? "all 2^32" : "every step-th of the 2^32",
              step == 1 ? "" : (" (step " + std::to_string(step) + ")").c_str(), threads);
  for (const Function& f : chosen) {
    const auto t0 = std::chrono::steady_clock::now();
    constexpr std::uint64_t kTotal = std::uint64_t{1} << 32, kChunk = std::uint64_t{1} << 22;
    std::atomic<std::uint64_t> next{0};
    std::vector<Tally> tallies(threads);
    std::vector<std::thread> pool;
    for (unsigned w = 0; w < threads; ++w)
      pool.emplace_back([&, w] {
        for (std::uint64_t c; (c = next.fetch_add(kChunk)) < kTotal;) {
          const std::uint64_t first = (c + step - 1) / step * step;  // multiples of step only
          check_range(f, first, c + kChunk, step, tallies[w]);
        }
      });
    for (auto& th : pool) th.join();
    Tally sum;
    for (const Tally& t : tallies) {
      sum.checked += t.checked, sum.not_rounded += t.not_rounded, sum.nan_wrong += t.nan_wrong;
      if (t.max_ulp > sum.max_ulp) sum.max_ulp = t.max_ulp, sum.worst = t.worst;
      for (auto e : t.examples)
        if (sum.examples.size() < 8) sum.examples.push_back(e);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    char at[64] = "";
    if (sum.max_ulp) std::snprintf(at, sizeof at, " (at x = %a)", static_cast<double>(sum.worst));
    std::printf("%-6s checked %llu, max %lld ulp%s, not correctly rounded: %llu (NaN wrong: %llu), %.0f s\n", f.name,
                static_cast<unsigned long long>(sum.checked), static_cast<long long>(sum.max_ulp), at,
                static_cast<unsigned long long>(sum.not_rounded), static_cast<unsigned long long>(sum.nan_wrong), secs);
    for (auto e : sum.examples) {
      const float x = from_bits(e);
      std::printf("  x = %a: ours %a, correctly rounded %a\n", static_cast<double>(x), static_cast<double>(f.ours(x)),
                  static_cast<double>(static_cast<float>(f.ref(static_cast<long double>(x)))));
    }
    std::fflush(stdout);
  }
  return 0;
}
