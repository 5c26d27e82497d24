// The rounding bound (reference/NUMERICS.md, "How far two results may differ"): its budgets are
// the formulas the note states, a token's bound follows from hand-computed magnitudes, and the
// verdict sentence every command prints.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "rounding_bound.hpp"

using namespace moesim;
using namespace moesim::bound;

namespace {
constexpr double u = 0x1p-24, b = 0x1p-8, q = 0x1p-4, u64 = 0x1p-53;

TraceConfig config() {
  TraceConfig c;
  c.num_ranks = 2;
  c.num_experts = 4;
  c.top_k = 2;
  c.hidden = 64;
  c.intermediate = 32;
  c.shared_intermediate = 32;
  c.activation = Activation::silu_gated;
  c.token_dtype = DType::bf16;
  c.weight_dtype = DType::bf16;
  return c;
}
}  // namespace

TEST_CASE("expert budget: the steps of NUMERICS.md, inputs counted only when the modes differ") {
  const TraceConfig c = config();
  // Same mode: GEMM1 (H sums, rb(g)) carried by kappa + 1 = 2.3, then activation, rb(h), GEMM2, rb(y).
  const double bf16_side = 2.3 * (64 * u + b) + (10 * u + b) + (32 * u + b);
  CHECK(Budget(c, {Numerics::bf16, 0}, {Numerics::bf16, 0}).expert() == doctest::Approx(2 * bf16_side).epsilon(1e-12));
  // fp8 against exact: the dispatch quantization (u_q + 2 u_c) joins GEMM1's budget on the fp8 side.
  const double fp8_side = 2.3 * (q + 2 * u + 64 * u + b) + (10 * u + b) + (32 * u + b);
  const double exact_side = 2.3 * (64 * u64) + 10 * u64 + 32 * u64;
  CHECK(Budget(c, {Numerics::exact, 0}, {Numerics::fp8, 0}).expert() ==
        doctest::Approx(fp8_side + exact_side).epsilon(1e-12));
  // Plain activations carry kappa alone; float32 tokens and weights round them in bf16 (steps 4, rb(w1), rb(w2)).
  TraceConfig p = c;
  p.activation = Activation::gelu_erf;
  p.token_dtype = DType::f32;
  p.weight_dtype = DType::f32;
  const double plain_bf16 = 1.3 * (b + b + 64 * u + b) + (10 * u + b) + b + (32 * u + b);
  const double plain_fp32 = 1.3 * (64 * u) + 10 * u + 32 * u;
  CHECK(Budget(p, {Numerics::fp32, 0}, {Numerics::bf16, 0}).expert() ==
        doctest::Approx(plain_fp32 + plain_bf16).epsilon(1e-12));
  // A received row adds its weighted partial's sum: K u_c + u_b per side, plus rank-sum's level.
  CHECK(Budget(c, {Numerics::bf16, 1}, {Numerics::bf16, 0}).received_row() ==
        doctest::Approx(2 * bf16_side + (2 * u + 2 * b) + (2 * u + b)).epsilon(1e-12));
  CHECK(partial_levels("rank-sum") == 1);
  CHECK(partial_levels("internode-v1") == 2);
  CHECK(partial_levels("weighted") == 0);
  CHECK(partial_levels("") == 0);
}

TEST_CASE("a token's bound from hand-computed magnitudes: combine_out, then final_out with scaling and a shared expert") {
  TraceConfig c = config();
  c.hidden = 2;
  c.intermediate = 3;
  c.shared_intermediate = 3;
  const Budget one(c, {Numerics::bf16, 0}, {Numerics::bf16, 0});
  const double e = one.expert(), sum = 2 * (2 * u + b);
  const double y[] = {1, -2, 4, 0};  // slot 0: (1, -2), slot 1: (4, 0)
  const float w[] = {0.5f, 0.25f};
  double out[2];
  one.token(y, w, nullptr, out);
  // A = (0.5 + 1, 1 + 0), C = 0.5 * e * 2 + 0.25 * e * 4.
  CHECK(out[0] == doctest::Approx(sum * 1.5 + 2 * e).epsilon(1e-12));
  CHECK(out[1] == doctest::Approx(sum * 1.0 + 2 * e).epsilon(1e-12));

  c.routed_scaling_factor = 2;
  c.num_shared_experts = 1;
  const Budget two(c, {Numerics::bf16, 0}, {Numerics::bf16, 0});
  CHECK(two.expert() == doctest::Approx(e));
  // Routed sums (1.5, -1) scaled by 2, plus shared outputs (0.5, -1).
  const double fin[] = {3.5, -3};
  two.token(y, w, fin, out);
  const double op = 2 * (u + b);  // scaling, and the shared add, per side
  for (int j = 0; j < 2; ++j) {
    const double A = j == 0 ? 1.5 : 1.0, sh = j == 0 ? 0.5 : 1.0;
    CHECK(out[j] == doctest::Approx(2 * (sum * A + 2 * e) + op * 2 * A + op * (2 * A + sh) + e * 1.0).epsilon(1e-12));
  }
  // With the weight on the input, slot outputs already carry it: weights count as 1.
  c.router_weight_on_input = true;
  c.routed_scaling_factor = 1;
  c.num_shared_experts = 0;
  const Budget on(c, {Numerics::bf16, 0}, {Numerics::bf16, 0});
  on.token(y, w, nullptr, out);
  CHECK(out[0] == doctest::Approx(2 * (2 * u + b) * 5 + on.expert() * (2 + 4)).epsilon(1e-12));
}

TEST_CASE("ratio: equal values use nothing, a zero bound or a non-finite value never agrees") {
  CHECK(ratio(1.0, 1.0, 0) == 0);
  CHECK(ratio(1.5, 1.0, 0.25) == 2);
  CHECK(std::isinf(ratio(1.0, 1.5, 0)));
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(std::isinf(ratio(inf, inf, 1)));
  CHECK(std::isinf(ratio(nan, nan, 1)));
  CHECK(std::isinf(ratio(nan, 0, 1)));
}

TEST_CASE("the verdict sentence: how much of the bound the worst element used, or by how much and where it exceeds") {
  Worst w;
  CHECK(w.add(0.25, {0, 1, 3, -1, -1, 2}, "/a"));
  CHECK_FALSE(w.add(0.2, {}, "/b"));
  CHECK(w.add(0.31, {}, ""));
  CHECK(w.within());
  CHECK(verdict_text("the bf16 rounding bound", w) == "within the bf16 rounding bound (worst element used 0.31 of it)");
  CHECK(w.add(37.2, {0, 2, 17, -1, -1, 5}, "/layers/0/ranks/2/final_out"));
  CHECK_FALSE(w.within());
  CHECK(verdict_text("the bf16 rounding bound", w) ==
        "exceeds the bf16 rounding bound by 37x at layer 0, rank 2, token 17, column 5 (/layers/0/ranks/2/final_out)");
  Worst r;
  r.add(1.5, {1, 0, -1, 12, 3, 7}, "");
  CHECK(verdict_text("the fp8 rounding bound", r) == "exceeds the fp8 rounding bound by 1.5x at layer 1, rank 0, row 12, slot 3, column 7");
  Worst z;
  z.add(std::numeric_limits<double>::infinity(), {0, 0, 0, -1, -1, 0}, "");
  CHECK(verdict_text("the exact rounding bound", z) ==
        "exceeds the exact rounding bound at layer 0, rank 0, token 0, column 0: a value that allows no rounding "
        "differs, or is not finite");
  CHECK(Budget(config(), {Numerics::fp32, 0}, {Numerics::fp8, 0}).label() == "the fp8 rounding bound");
  CHECK(Budget(config(), {Numerics::exact, 0}, {Numerics::exact, 0}).label() == "the exact rounding bound");
}

TEST_CASE("schema v2's families: biases and the shared gate add their steps; folded weights get no scaling") {
  TraceConfig c = config();
  const double base = Budget(c, {Numerics::bf16, 0}, {Numerics::bf16, 0}).expert();
  c.expert_bias = true;  // one add after each GEMM, on both sides
  CHECK(Budget(c, {Numerics::bf16, 0}, {Numerics::bf16, 0}).expert() == doctest::Approx(base + 4 * u).epsilon(1e-12));
  // DeepSeek-V3: weights that hold 2.5 give the bounds of factor 1 (combine applies none).
  TraceConfig folded = config(), one = config();
  folded.num_shared_experts = one.num_shared_experts = 1;
  folded.routed_scaling_factor = 2.5;
  folded.topk_weights_include_scaling = true;
  const double y[2 * 64] = {1.0, -0.5, 0.25}, final_ref[64] = {3.0, 1.0};
  const float w[2] = {1.25f, 1.25f};  // 0.5 each, times 2.5
  double got[64], want[64];
  Budget(folded, {Numerics::bf16, 0}, {Numerics::bf16, 0}).token(y, w, final_ref, got);
  Budget(one, {Numerics::bf16, 0}, {Numerics::bf16, 0}).token(y, w, final_ref, want);
  for (int j = 0; j < 64; ++j) CHECK(got[j] == want[j]);
  TraceConfig twice = folded;  // the factor applied again would widen the bound
  twice.topk_weights_include_scaling = false;
  Budget(twice, {Numerics::bf16, 0}, {Numerics::bf16, 0}).token(y, w, final_ref, want);
  CHECK(want[0] > got[0]);
}
