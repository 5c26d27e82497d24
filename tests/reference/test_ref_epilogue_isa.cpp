// The SiLU-gated epilogue gives the scalar's bits on AVX2 (epilogue.hpp): every output float's
// bit pattern, NaN payloads included, on random bit patterns over the whole float range, every
// float of the ranges where expf's double result crosses float's overflow, subnormal and zero
// limits, the special values, and lengths that leave a tail, with and without bf16 rounding and bias.
// Where one operation meets two NaNs (a bias sum, or act * up), which one it returns is the
// compiler's choice of operand order (GCC's and clang's builds of the scalar differ): there both
// builds must give a NaN, any NaN; everywhere else every bit.
#include <doctest/doctest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "epilogue.hpp"
#include "hd.hpp"
#include "round.hpp"

using namespace moesim;

namespace {

struct Inputs {
  std::vector<float> gate, up, gate_bias, up_bias;
};

// Whether element i meets two NaNs in one operation: a bias sum, or act(g) * u (act is NaN for a
// NaN g and for g = -inf).
bool two_nans(float gate, float up, const float* gb, const float* ub, bool bf16) {
  auto rb = [bf16](float v) { return bf16 ? hd::round_bf16(v) : v; };
  if (gb && std::isnan(gate) && std::isnan(*gb)) return true;
  if (ub && std::isnan(up) && std::isnan(*ub)) return true;
  const float g = rb(gb ? gate + *gb : gate), u = rb(ub ? up + *ub : up);
  return (std::isnan(g) || g == -INFINITY) && std::isnan(u);
}

// The first element whose bits differ between the two builds, or -1.
long first_difference(const Inputs& in, bool bias, bool bf16, std::size_t offset = 0) {
  const int n = static_cast<int>(in.gate.size() - offset);
  std::vector<float> scalar(n), avx2(n);
  const float* gb = bias ? in.gate_bias.data() + offset : nullptr;
  const float* ub = bias ? in.up_bias.data() + offset : nullptr;
  const float* g = in.gate.data() + offset;
  const float* u = in.up.data() + offset;
  epilogue::silu_gated(g, u, gb, ub, n, bf16, scalar.data(), gemm::Isa::sse2);
  epilogue::silu_gated(g, u, gb, ub, n, bf16, avx2.data(), gemm::Isa::avx2);
  for (int i = 0; i < n; ++i)
    if (hd::bits(scalar[i]) != hd::bits(avx2[i]) &&
        !(std::isnan(scalar[i]) && std::isnan(avx2[i]) &&
          two_nans(g[i], u[i], gb ? gb + i : nullptr, ub ? ub + i : nullptr, bf16))) {
      std::printf("element %d: gate %08x up %08x bias %08x %08x: scalar %08x, avx2 %08x\n", i, hd::bits(g[i]),
                  hd::bits(u[i]), gb ? hd::bits(gb[i]) : 0u, ub ? hd::bits(ub[i]) : 0u, hd::bits(scalar[i]),
                  hd::bits(avx2[i]));
      return i;
    }
  return -1;
}

void check_all_modes(const Inputs& in) {
  for (bool bias : {false, true})
    for (bool bf16 : {false, true}) {
      CAPTURE(bias);
      CAPTURE(bf16);
      CHECK(first_difference(in, bias, bf16) == -1);
    }
}

float random_bits(std::mt19937& rng) { return hd::from_bits(static_cast<std::uint32_t>(rng())); }

// Gates from `gates`; up values and biases from `up`, cycled at a length prime to the gates'.
Inputs with_gates(const std::vector<float>& gates, const std::vector<float>& other) {
  Inputs in;
  for (std::size_t i = 0; i < gates.size(); ++i) {
    in.gate.push_back(gates[i]);
    in.up.push_back(other[i % other.size()]);
    in.gate_bias.push_back(other[(i * 7 + 3) % other.size()]);
    in.up_bias.push_back(other[(i * 13 + 5) % other.size()]);
  }
  return in;
}

// `count` consecutive floats from `start`, away from zero.
std::vector<float> every_float(float start, std::uint32_t count) {
  std::vector<float> v;
  for (std::uint32_t i = 0; i < count; ++i) v.push_back(hd::from_bits(hd::bits(start) + i));
  return v;
}

std::vector<float> specials() {
  const float inf = __builtin_inff();
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, inf, -inf, FLT_MIN, -FLT_MIN,
                          FLT_TRUE_MIN, -FLT_TRUE_MIN, 88.72f, -88.72f, 103.9f, -103.9f, 0.5f, 3e-39f, -3e-39f};
  for (std::uint32_t nan : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fc12345u, 0xffa5a5a5u, 0x7fffffffu})
    v.push_back(hd::from_bits(nan));
  return v;
}

std::vector<float> ordinary(unsigned seed, std::size_t n) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace

TEST_CASE("the AVX2 SiLU-gated epilogue gives the scalar's bits") {
  if (!gemm::supported(gemm::Isa::avx2)) {
    MESSAGE("no AVX2 and FMA on this CPU: nothing to compare");
    return;
  }
  SUBCASE("random bit patterns: every magnitude, subnormals, infinities, NaN payloads") {
    std::mt19937 rng(12);
    Inputs in;
    for (int i = 0; i < (1 << 20); ++i) {
      in.gate.push_back(random_bits(rng));
      in.up.push_back(random_bits(rng));
      in.gate_bias.push_back(random_bits(rng));
      in.up_bias.push_back(random_bits(rng));
    }
    check_all_modes(in);
  }
  SUBCASE("random gates of moderate size, where most outputs are ordinary floats") {
    std::mt19937 rng(13);
    std::uniform_real_distribution<float> d(-120.0f, 120.0f);
    std::vector<float> gates(1 << 18);
    for (float& x : gates) x = d(rng);
    check_all_modes(with_gates(gates, ordinary(14, 4099)));
  }
  SUBCASE("every float where expf(-g) overflows, turns subnormal or zero in float, and near zero") {
    // expf(x) overflows past 88.72, is subnormal below -87.34 and zero below -103.97 (2^18 floats
    // from 87 or 103 reach past 89 or 105); k changes at x = +-ln2 / 2; 1 + expf rounds near 6e-8.
    for (float start : {87.0f, 103.0f, 0.3465f, 5.9e-8f, 0.0f})
      for (float sign : {1.0f, -1.0f}) {
        CAPTURE(start * sign);
        const std::vector<float> gates = every_float(start * sign, 1u << 18);
        check_all_modes(with_gates(gates, ordinary(15, 1009)));
        check_all_modes(with_gates(gates, {1.0f}));  // the activation alone (the biases 1 too)
      }
  }
  SUBCASE("special values as gate, up and bias, in every combination") {
    const std::vector<float> s = specials();
    Inputs in;
    for (float g : s)
      for (float u : s)
        for (float b : s) {
          in.gate.push_back(g), in.up.push_back(u), in.gate_bias.push_back(b), in.up_bias.push_back(u == g ? b : -b);
        }
    check_all_modes(in);
  }
  SUBCASE("lengths that leave a tail, at every offset") {
    const Inputs in = with_gates(ordinary(16, 40), specials());
    for (bool bias : {false, true})
      for (bool bf16 : {false, true})
        for (std::size_t offset = 0; offset < 40; ++offset) {
          CAPTURE(offset);
          CHECK(first_difference(in, bias, bf16, offset) == -1);
        }
  }
}

TEST_CASE("the epilogue on the process's instruction set gives the scalar's bits") {
  const Inputs in = with_gates(ordinary(17, 1000), ordinary(18, 333));
  for (bool bf16 : {false, true}) {
    std::vector<float> scalar(1000), active(1000);
    epilogue::silu_gated(in.gate.data(), in.up.data(), nullptr, nullptr, 1000, bf16, scalar.data(), gemm::Isa::sse2);
    epilogue::silu_gated(in.gate.data(), in.up.data(), nullptr, nullptr, 1000, bf16, active.data());
    for (int i = 0; i < 1000; ++i) REQUIRE(hd::bits(scalar[i]) == hd::bits(active[i]));
  }
}

TEST_CASE("the AVX2 exp gives fmath::exp's bits over the whole double range") {
  if (!gemm::supported(gemm::Isa::avx2)) {
    MESSAGE("no AVX2 and FMA on this CPU: nothing to compare");
    return;
  }
  std::mt19937_64 rng(19);
  std::vector<double> x;
  for (int i = 0; i < (1 << 18); ++i) x.push_back(hd::from_bits(static_cast<std::uint64_t>(rng())));
  std::uniform_real_distribution<double> wide(-760.0, 720.0), tiny(-1e-3, 1e-3);
  for (int i = 0; i < (1 << 18); ++i) x.push_back(wide(rng));
  // Every k of exp_parts, odd and even, negative ones included (scale's k / 2 toward zero), at
  // the reduction's edges k ln2 +- ln2 / 2, and where results turn subnormal, zero or infinite.
  for (int k = -1080; k <= 1030; ++k)
    for (double f : {-0.5, -0.4999999, 0.0, 0.4999999, 0.5}) x.push_back((k + f) * 0x1.62e42fefa39efp-1 + tiny(rng));
  for (double start : {-746.0, -745.5, -708.4, 709.78, 710.0})
    for (int i = 0; i < 4096; ++i) x.push_back(hd::from_bits(hd::bits(start) + static_cast<std::uint64_t>(i) * 997));
  for (double v : {0.0, -0.0, 710.0, -746.0, 1e300, -1e300, __builtin_inf(), -__builtin_inf(), 4.9e-324, -4.9e-324})
    x.push_back(v);
  for (std::uint64_t nan : {0x7ff8000000000000ull, 0xfff8000000000001ull, 0x7ff0000000000001ull, 0xfff123456789abcdull})
    x.push_back(hd::from_bits(nan));
  for (std::size_t offset = 0; offset < 4; ++offset) {  // and a tail
    const int n = static_cast<int>(x.size() - offset);
    std::vector<double> scalar(n), avx2(n);
    epilogue::exp(x.data() + offset, n, scalar.data(), gemm::Isa::sse2);
    epilogue::exp(x.data() + offset, n, avx2.data(), gemm::Isa::avx2);
    for (int i = 0; i < n; ++i) {
      CAPTURE(x[offset + i]);
      REQUIRE(hd::bits(scalar[i]) == hd::bits(avx2[i]));
    }
  }
}
