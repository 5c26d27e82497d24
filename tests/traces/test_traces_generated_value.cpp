// Generated tensors (traces/SCHEMA.md, "/generator"): fill_generated is generated_value rounded
// to float and then to the dtype, and generated_value is the documented Box-Muller with moesim's
// log and cos_2pi (traces/fmath.hpp) or the uniform formula, bit for bit.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "dtype.hpp"
#include "fmath.hpp"
#include "generated_value.hpp"
#include "random.hpp"

using namespace moesim;

TEST_CASE("generated_value: Box-Muller with fmath::log and fmath::cos_2pi, uniform as sqrt(3) s (2u - 1)") {
  const std::uint64_t stream = stream_of(11, {2, 0, 3});
  for (std::uint64_t i = 0; i < 20000; ++i) {
    const double u1 = 1.0 - uniform01(stream, 2 * i), u2 = uniform01(stream, 2 * i + 1);
    const double normal = 0.25 * std::sqrt(-2.0 * fmath::log(u1)) * fmath::cos_2pi(u2);
    REQUIRE(hd::bits(generated_value(stream, i, true, 0.25)) == hd::bits(normal));
    const double a = std::sqrt(3.0) * 0.25;
    REQUIRE(hd::bits(generated_value(stream, i, false, 0.25)) == hd::bits(a * (2.0 * uniform01(stream, i) - 1.0)));
  }
}

TEST_CASE("fill_generated rounds generated_value to float, then to the dtype") {
  const std::uint64_t stream = stream_of(12, {1, 0, 0});
  constexpr std::size_t n = 5000;
  for (const char* dist : {"normal", "uniform"}) {
    const GeneratorSpec spec{12, dist, 1.0};
    const bool normal = spec.distribution == "normal";
    for (DType t : {DType::f32, DType::bf16, DType::f16, DType::e4m3, DType::e4m3fnuz}) {
      CAPTURE(dist);
      CAPTURE(name(t));
      std::vector<float> out(n);
      fill_generated(out.data(), n, spec, stream, 0.5, t);
      for (std::size_t i = 0; i < n; ++i) {
        float f = static_cast<float>(generated_value(stream, i, normal, 0.5));
        if (t == DType::bf16) f = round_bf16(f);
        else if (t == DType::f16) f = round_f16(f);
        else if (is_fp8(t)) f = round_fp8(f, t);
        REQUIRE(hd::bits(out[i]) == hd::bits(f));
      }
    }
  }
}

TEST_CASE("generated normals have mean 0 and variance 1 and stay finite for every uniform01 value") {
  const std::uint64_t stream = stream_of(13, {1});
  double sum = 0, sum2 = 0;
  constexpr int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double v = generated_value(stream, static_cast<std::uint64_t>(i), true, 1.0);
    sum += v, sum2 += v * v;
  }
  CHECK(std::fabs(sum / n) < 0.01);
  CHECK(std::fabs(sum2 / n - 1.0) < 0.01);
  // u1 = 1 - uniform01 is in (0, 1]: log is finite; the largest value needs u1 = 2^-53.
  CHECK(std::sqrt(-2.0 * fmath::log(0x1p-53)) == doctest::Approx(8.5717).epsilon(1e-4));
  CHECK(fmath::log(1.0) == 0.0);
}

TEST_CASE("fill_generated gives the same bits for any thread count") {
  const moesim::GeneratorSpec normal{9, "normal", 1.0}, uniform{9, "uniform", 2.0};
  const std::size_t n = 300007;  // several parts of uneven size
  for (const auto* spec : {&normal, &uniform}) {
    std::vector<float> one(n), three(n), seven(n);
    moesim::fill_generated(one.data(), n, *spec, 77, 0.5, moesim::DType::bf16, 1);
    moesim::fill_generated(three.data(), n, *spec, 77, 0.5, moesim::DType::bf16, 3);
    moesim::fill_generated(seven.data(), n, *spec, 77, 0.5, moesim::DType::bf16, 7);
    CHECK(std::memcmp(one.data(), three.data(), n * sizeof(float)) == 0);
    CHECK(std::memcmp(one.data(), seven.data(), n * sizeof(float)) == 0);
    CHECK(one[n - 1] == moesim::round_bf16(static_cast<float>(
                            moesim::generated_value(77, n - 1, spec == &normal, 0.5))));  // the last part is filled
  }
}
