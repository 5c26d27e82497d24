// bf16 and fp8 modes on small cases whose rounding is worked out by hand.
#include <doctest/doctest.h>

#include <cstring>

#include "quantize.hpp"
#include "ref_fixtures.hpp"

using namespace moesim;
using namespace moesim::testing;

namespace {

// One expert, H=2, I=1, SiLU gated: gate row [1, 2^-9], up row [3, 2^-7], w2 [[1], [0.3]].
ExpertMatrices hand_expert() {
  ExpertMatrices m;
  m.hidden = 2, m.inter = 1, m.gated = true;
  m.w1 = {1.0f, 0x1p-9f, 3.0f, 0x1p-7f};
  m.w2 = {1.0f, 0.3f};
  return m;
}

template <class T>
std::vector<T> run_one(Numerics n, const std::vector<float>& x, const float* input_weight = nullptr) {
  const PreparedExpert e(hand_expert(), Activation::silu_gated, n);
  ExpertOptions o;
  o.numerics = n;
  o.token_dtype = DType::bf16;
  TokenRows tr;
  tr.x = x.data();
  tr.input_weights = input_weight;
  tr.rows = 1;
  std::vector<T> y(2);
  run_expert(e, tr, o, y.data());
  return y;
}

}  // namespace

TEST_CASE("bf16 rounds after GEMM1, after act*up and after GEMM2") {
  // x = [1, 1]. fp32 GEMM1: gate 1 + 2^-9, up 3 + 2^-7. bf16 (8 significant bits): the gate
  // rounds down to 1 (2^-9 < half an ulp), the up tie 3 + 2^-7 goes to the even 3.
  // h = silu(1) * 3 = 2.19317... -> 2.1875 (ulp 2^-6 in [2, 4)).
  // w2 in bf16: 1 and 0.30078125; y = [2.1875, 0.65795898...] -> [2.1875, 0.65625].
  const auto y = run_one<float>(Numerics::bf16, {1.0f, 1.0f});
  CHECK(y[0] == 2.1875f);
  CHECK(y[1] == 0.65625f);
  // Without the rounding points the same expert gives other values.
  const auto f = run_one<float>(Numerics::fp32, {1.0f, 1.0f});
  const float g = 1.0f + 0x1p-9f, u = 3.0f + 0x1p-7f;
  const float h = g / (1.0f + fmath::expf(-g)) * u;
  CHECK(f[0] == h);
  CHECK(f[1] == h * 0.3f);
}

TEST_CASE("bf16 rounds the router weight times the input before the expert") {
  // 0.7 * [1, 1] = 0.69999999 -> bf16 0.69921875; gate 0.69921875 * (1 + 2^-9) = 0.70058...
  // -> 0.69921875 (179.35 ulps of 2^-8), up 0.69921875 * (3 + 2^-7) = 2.10312 -> 2.109375 (134.6
  // ulps of 2^-6).
  const float w = 0.7f;
  const auto y = run_one<float>(Numerics::bf16, {1.0f, 1.0f}, &w);
  const float gate = 0.69921875f, up = 2.109375f;
  const float h = round_bf16(gate / (1.0f + fmath::expf(-gate)) * up);
  CHECK(y[0] == h);
  CHECK(y[1] == round_bf16(h * 0.30078125f));
}

TEST_CASE("bf16 combine rounds the weighted sum, then the scaled sum, then adds the shared expert") {
  CombineSpec spec;
  spec.numerics = Numerics::bf16;
  spec.routed_scaling_factor = 2.5;
  const float y0[1] = {2.1875f}, y1[1] = {0.65625f}, shared[1] = {0.01171875f};
  const float* slots[3] = {y0, nullptr, y1};
  const float w[3] = {0.7f, 100.0f, 0.3f};
  float out[1];
  combine_token(spec, 1, 3, slots, w, shared, out);
  // acc = 0.7f*2.1875 + 0.3f*0.65625 = 1.7281249 -> bf16 1.7265625; * 2.5 = 4.31640625 -> 4.3125;
  // + 0.01171875 = 4.32421875 -> 4.3125 (ulp 2^-5 in [4, 8)).
  CHECK(out[0] == 4.3125f);
  spec.numerics = Numerics::fp32;
  combine_token(spec, 1, 3, slots, w, shared, out);
  CHECK(out[0] == (0.7f * 2.1875f + 0.3f * 0.65625f) * 2.5f + 0.01171875f);
}

TEST_CASE("fp8 mode quantizes dispatch rows per 1x128 block, OCP e4m3 and FNUZ alike") {
  std::vector<float> x(256, 0.0f);
  x[0] = 1.0f, x[1] = 0.3f;      // block 0: amax 1
  x[128] = 0.5f, x[129] = 0.3f;  // block 1: amax 0.5
  TokenRows tr;
  tr.x = x.data();
  tr.rows = 1;
  ExpertOptions o;
  o.numerics = Numerics::fp8;
  o.token_dtype = DType::bf16;
  std::vector<float> row(256);
  // OCP e4m3: 0.3 * 448 = 134.4 -> 128 (step 16 in [128, 256)); 0.3 * 896 = 268.8 -> 256 (step 32).
  o.fp8_format = DType::e4m3;
  expert_input_row(tr, 0, 256, o, row.data());
  CHECK(row[1] == 128.0f * (1.0f / 448.0f));
  CHECK(row[129] == 256.0f * (0.5f / 448.0f));
  CHECK(row[0] == 448.0f * (1.0f / 448.0f));
  CHECK(row[2] == 0.0f);
  // FNUZ: 0.3 * 240 = 72 exactly representable (step 8 in [64, 128)); 0.3 * 480 = 144 (step 16).
  o.fp8_format = DType::e4m3fnuz;
  expert_input_row(tr, 0, 256, o, row.data());
  CHECK(row[1] == round_fp8(0.3f / (1.0f / 240.0f), DType::e4m3fnuz) * (1.0f / 240.0f));
  CHECK(round_fp8(0.3f / (1.0f / 240.0f), DType::e4m3fnuz) == 72.0f);
  CHECK(row[129] == 144.0f * (0.5f / 240.0f));
}

TEST_CASE("fp8 tokens keep their stored scales in fp8 mode, other modes dequantize them") {
  std::vector<float> src(128), q(128), s(1);
  for (int i = 0; i < 128; ++i) src[i] = 0.01f * (i - 60);
  quantize_blocks(src.data(), 1, 128, 128, DType::e4m3, q.data(), s.data());
  TokenRows tr;
  tr.x = q.data();
  tr.scales = s.data();
  tr.rows = 1;
  ExpertOptions o;
  o.token_dtype = DType::e4m3;
  std::vector<float> f(128);
  std::vector<double> d(128);
  o.numerics = Numerics::fp8;
  expert_input_row(tr, 0, 128, o, f.data());
  for (int i = 0; i < 128; ++i) REQUIRE(f[i] == q[i] * s[0]);
  o.numerics = Numerics::bf16;
  expert_input_row(tr, 0, 128, o, f.data());
  for (int i = 0; i < 128; ++i) REQUIRE(f[i] == round_bf16(q[i] * s[0]));
  o.numerics = Numerics::exact;
  expert_input_row(tr, 0, 128, o, d.data());
  for (int i = 0; i < 128; ++i) REQUIRE(d[i] == double(q[i]) * double(s[0]));
}

TEST_CASE("fp8 mode runs the bf16 expert pipeline on the dequantized row") {
  TraceShape s;
  s.hidden = 256, s.inter = 16, s.top_k = 1;
  const Trace t = make_trace(s);
  ReferenceOptions ro;
  ro.numerics = Numerics::fp8;
  const auto out = run_reference(t, ro)[0].ranks[0];
  const RankInput& in = t.layers[0].ranks[0];
  std::vector<float> q(in.x.size()), sc(in.num_tokens * 2);
  quantize_blocks(in.x.data(), in.num_tokens, 256, 128, DType::e4m3, q.data(), sc.data());
  const WeightProvider wp(t);
  for (std::int64_t tok = 0; tok < in.num_tokens; ++tok) {
    std::vector<float> a(256);
    for (int c = 0; c < 256; ++c) a[c] = q[tok * 256 + c] * sc[tok * 2 + c / 128];
    const auto y = naive_ffn<float>(wp.routed(0, in.topk_ids[tok]), s.act, a, true);
    REQUIRE(std::memcmp(y.data(), out.expert_out.f32.data() + tok * 256, 256 * sizeof(float)) == 0);
  }
}
