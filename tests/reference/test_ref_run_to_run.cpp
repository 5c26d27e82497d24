// RunToRun (reference/run_to_run.hpp): which elements two runs of a layer changed, by how many
// ulps of the values' format, and where the first one is.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "run_to_run.hpp"

using namespace moesim;

namespace {
// 2 ranks of 3 tokens, H = 4, bf16 values v = (rank + 1) * (token + 1) + column / 8.
LayerOutputs layer() {
  LayerOutputs l;
  l.ranks.resize(2);
  for (int r = 0; r < 2; ++r) {
    l.ranks[r].num_tokens = 3;
    l.ranks[r].final_out.wide = false;
    for (int t = 0; t < 3; ++t)
      for (int c = 0; c < 4; ++c) l.ranks[r].final_out.f32.push_back((r + 1) * (t + 1) + c / 8.0f);
  }
  return l;
}
float bf16_step(float v, int ulps) {  // v moved by `ulps` bf16 units in the last place
  std::uint32_t b;
  std::memcpy(&b, &v, 4);
  b += static_cast<std::uint32_t>(ulps) << 16;
  std::memcpy(&v, &b, 4);
  return v;
}
}  // namespace

TEST_CASE("identical runs change nothing; a changed element is counted, measured in bf16 ulps and placed") {
  const LayerOutputs a = layer();
  RunToRun same;
  same.add(a, layer(), Numerics::bf16);
  CHECK(same.elements == 24);
  CHECK(same.changed == 0);
  CHECK(same.text() == "0 of 24 final_out elements changed");

  LayerOutputs b = layer();
  b.ranks[1].final_out.f32[2 * 4 + 3] = bf16_step(b.ranks[1].final_out.f32[2 * 4 + 3], 3);
  b.ranks[0].final_out.f32[1 * 4 + 1] = bf16_step(b.ranks[0].final_out.f32[1 * 4 + 1], 1);
  RunToRun d;
  d.add(a, b, Numerics::bf16);
  CHECK(d.changed == 2);
  CHECK(d.max_ulps == 3);
  CHECK(d.first == "rank 0 token 1 column 1");
  CHECK(d.max_value == doctest::Approx(6.375));
  CHECK(d.max_abs == doctest::Approx(std::fabs(b.ranks[1].final_out.f32[11] - a.ranks[1].final_out.f32[11])));
  CHECK(d.text().rfind("2 of 24 final_out elements changed (max 3 bf16 ulp, max |diff| ", 0) == 0);

  RunToRun f32;  // the same bits read as float32 values: 65536 times the ulps
  f32.add(a, b, Numerics::fp32);
  CHECK(f32.max_ulps == 3 * 65536);
  CHECK(f32.unit == "float32");
}

TEST_CASE("a sign change near zero is many ulps apart but a tiny difference") {
  LayerOutputs a = layer(), b = layer();
  a.ranks[0].final_out.f32[0] = 1e-30f;
  b.ranks[0].final_out.f32[0] = -1e-30f;
  RunToRun d;
  d.add(a, b, Numerics::fp32);
  CHECK(d.changed == 1);
  CHECK(d.max_ulps > 1000000);
  CHECK(d.max_abs == doctest::Approx(2e-30));
}
