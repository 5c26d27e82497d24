// MORI's combine quantization (fp8_direct_cast, fp8_blockwise): the rows a rank returns are sent
// as fp8 and dequantized into the float32 sum, with the rules of sim/combine_quant.hpp; identity
// experts then pass MORI's own tolerances (1e-1, 7e-2) where a saturating cast does not.
#include <doctest/doctest.h>

#include "combine_quant.hpp"
#include "error.hpp"
#include "identity_check.hpp"
#include "sim_fixtures.hpp"
#include "simulate.hpp"

using namespace moesim;
using namespace moesim::sim;

TEST_CASE("fp8_direct_cast saturates at the format's max; blockwise scales only blocks past it") {
  const float row[8] = {1.0f, 500.0f, -0.3f, 2.0f, /**/ 3.0f, -7.5f, 0.01f, 100.0f};
  float q[8], s[8];
  CombineQuantOptions o;
  o.type = CombineQuant::fp8_direct_cast;
  quantize_combine_row(o, row, 8, q, s);
  CHECK(q[1] == 448.0f);       // saturated
  CHECK(q[2] == -0.3125f);     // e4m3: 0.3 between 0.28125 and 0.3125, nearer the latter
  CHECK(q[7] == 96.0f);        // 100 between 96 and 104: nearer 96
  for (float v : s) CHECK(v == 1.0f);
  o.fp8 = DType::e4m3fnuz;
  quantize_combine_row(o, row, 8, q, s);
  CHECK(q[1] == 240.0f);  // FNUZ saturates at 240
  o.fp8 = DType::e4m3;
  o.type = CombineQuant::fp8_blockwise;
  o.scale_dim = 2;  // blocks of 4
  float direct[8], unit[8];
  CombineQuantOptions dc = o;
  dc.type = CombineQuant::fp8_direct_cast;
  quantize_combine_row(dc, row, 8, direct, unit);
  quantize_combine_row(o, row, 8, q, s);
  // Block 0 (max 500 > 448): s = 500 * (1 / 448), q = fp8(x * (448 / 500)); 500 lands on 448 again.
  const float inv = 448.0f / 500.0f;
  for (int h = 0; h < 4; ++h) CHECK(s[h] == 500.0f * (1.0f / 448.0f));
  CHECK(q[1] == 448.0f);
  CHECK(q[0] == round_fp8(1.0f * inv, DType::e4m3));
  CHECK(q[0] * s[0] != direct[0]);
  // Block 1 (max 100): not scaled, the direct cast's bits.
  for (int h = 4; h < 8; ++h) {
    CHECK(s[h] == 1.0f);
    CHECK(q[h] == direct[h]);
  }
}

TEST_CASE("the dequantized values are added fused (q * s + acc rounded once), as hipcc contracts it") {
  // 1.125 * (1 + 2^-23) = 1.125 + 9 * 2^-26 exactly; rounded alone it becomes 1.125 + 2^-23.
  const float q = 1.125f, s = 1.0f + 0x1p-23f;
  float acc = -1.125f;
  accumulate_quantized(&q, &s, 1, &acc);
  CHECK(acc == 9 * 0x1p-26f);
  CHECK(acc != (q * s) + -1.125f);
}

TEST_CASE("identity experts with MORI's combine quantization: blockwise passes MORI's 7e-2 where a saturating cast fails 1e-1") {
  test::TraceShape shape;
  shape.ranks = 4;
  shape.experts = 16;
  shape.hidden = 256;
  shape.tokens = {6, 9, 4, 7};
  shape.token_dtype = DType::bf16;
  Trace tr = test::make_trace(shape);
  // A few large activations, as real layers have: 1000 past fp8's 448 in one block of each token.
  for (auto& in : tr.layers[0].ranks)
    for (std::int64_t t = 0; t < in.num_tokens; ++t) in.x[t * shape.hidden + 200] = 1000.0f;
  const ExpertMap map = make_expert_map(tr.config);
  const WeightProvider wp(tr);
  auto run = [&](CombineQuant q) {
    SimOptions o;
    o.consumer.model = ConsumerModel::identity;
    o.numerics = Numerics::bf16;
    o.combine_quant.type = q;
    o.combine_quant.scale_dim = 2;  // blocks of 128 as at H = 7168
    const LayerRun r = simulate_layer(tr, 0, wp, map, o);
    return std::pair{r, check_identity(tr, 0, map, r, o)};
  };
  const auto [plain, plain_ck] = run(CombineQuant::none);
  const auto [direct, direct_ck] = run(CombineQuant::fp8_direct_cast);
  const auto [block, block_ck] = run(CombineQuant::fp8_blockwise);
  CHECK(plain_ck.passes);
  CHECK(block_ck.passes);
  CHECK(block_ck.bar == "MORI's allclose(atol = rtol = 7e-2) on every token");
  CHECK_FALSE(direct_ck.passes);  // 1000 saturates to 448
  CHECK(direct_ck.bad_tokens == direct_ck.tokens);
  bool differs = false;
  for (std::size_t i = 0; i < plain.ranks[1].combine_out.f32.size(); ++i)
    differs = differs || plain.ranks[1].combine_out.f32[i] != block.ranks[1].combine_out.f32[i];
  CHECK(differs);
  // Only MORI's rank-sum quantizes, and only bf16 rows.
  SimOptions o;
  o.combine_quant.type = CombineQuant::fp8_blockwise;
  o.numerics = Numerics::fp32;
  CHECK_THROWS_WITH_AS(simulate_layer(tr, 0, wp, map, o), doctest::Contains("needs numerics bf16 or fp8"), Error);
  o.numerics = Numerics::bf16;
  o.dispatch.model = DispatchModel::deepep_ht;
  o.consumer.model = ConsumerModel::deepep_local;
  CHECK_THROWS_WITH_AS(simulate_layer(tr, 0, wp, map, o), doctest::Contains("needs dispatch mori and combine rank-sum"),
                       Error);
}
