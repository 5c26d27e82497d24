// Hand-computed tiny cases (2 tokens, 2 experts, H=2, I=1) for every activation, exact mode.
#include <doctest/doctest.h>

#include <map>

#include "../../reference/reference.hpp"

using namespace moesim;

namespace {

struct ActValues {
  double at_1, at_2, at_m1, at_half;  // act(1), act(2), act(-1), act(0.5), from the closed forms
};

const std::map<Activation, ActValues> kValues = {
    {Activation::silu, {0.7310585786300049, 1.7615941559557646, -0.2689414213699951, 0.3112296656009273}},
    {Activation::gelu_erf, {0.8413447460685429, 1.9544997361036416, -0.15865525393145707, 0.34573123063700656}},
    {Activation::gelu_tanh, {0.8411919906082768, 1.954597694087775, -0.15880800939172324, 0.34571400982514394}},
};

Activation plain_of(Activation a) {
  switch (a) {
    case Activation::silu_gated: return Activation::silu;
    case Activation::gelu_erf_gated: return Activation::gelu_erf;
    case Activation::gelu_tanh_gated: return Activation::gelu_tanh;
    default: return a;
  }
}

// Expert 0 routes x[0] to its gate (x[1] to up) and writes [h, 2h]; expert 1 the other way
// round and writes [-h, 3h]. Plain activations keep only the gate rows.
Trace tiny(Activation act) {
  Trace t;
  TraceConfig& c = t.config;
  c.num_ranks = 1, c.num_experts = 2, c.top_k = 2, c.hidden = 2, c.intermediate = 1;
  c.activation = act;
  c.token_dtype = c.weight_dtype = DType::f32;
  c.placement = contiguous_placement(2, 1);
  Layer l;
  RankInput in;
  in.num_tokens = 2;
  in.x = {1, 2, -1, 0.5f};
  in.topk_ids = {0, 1, 1, 0};
  in.topk_weights = {0.5f, 0.25f, 1.0f, 0.0f};
  l.ranks.push_back(in);
  ExpertWeights w;
  if (is_gated(act))
    w.w1 = {1, 0, 0, 1, /* expert 1 */ 0, 1, 1, 0};
  else
    w.w1 = {1, 0, /* expert 1 */ 0, 1};
  w.w2 = {1, 2, -1, 3};
  l.weights = w;
  t.layers.push_back(l);
  return t;
}

void check_close(double got, double want) { CHECK(got == doctest::Approx(want).epsilon(1e-15)); }

}  // namespace

TEST_CASE("every activation matches its hand-computed two-token, two-expert result") {
  for (Activation act : {Activation::silu_gated, Activation::gelu_erf_gated, Activation::gelu_tanh_gated,
                         Activation::silu, Activation::gelu_erf, Activation::gelu_tanh}) {
    CAPTURE(name(act));
    const ActValues v = kValues.at(plain_of(act));
    const bool gated = is_gated(act);
    const auto out = run_reference(tiny(act), {}).at(0).ranks.at(0);
    // token 0: expert 0 sees gate 1 (up 2), expert 1 gate 2 (up 1); weights 0.5, 0.25.
    const double h00 = gated ? 2 * v.at_1 : v.at_1, h01 = v.at_2;
    // token 1: expert 1 sees gate 0.5 (up -1), expert 0 gate -1 (up 0.5) with weight 0.
    const double h10 = gated ? -v.at_half : v.at_half, h11 = gated ? 0.5 * v.at_m1 : v.at_m1;
    const double expert[2][2][2] = {{{h00, 2 * h00}, {-h01, 3 * h01}}, {{-h10, 3 * h10}, {h11, 2 * h11}}};
    for (int t = 0; t < 2; ++t)
      for (int k = 0; k < 2; ++k)
        for (int h = 0; h < 2; ++h) check_close(out.expert_out[(t * 2 + k) * 2 + h], expert[t][k][h]);
    check_close(out.final_out[0], 0.5 * h00 - 0.25 * h01);
    check_close(out.final_out[1], 0.5 * 2 * h00 + 0.25 * 3 * h01);
    check_close(out.final_out[2], -h10);
    check_close(out.final_out[3], 3 * h10);
  }
}

TEST_CASE("activation_value follows the closed forms in both precisions") {
  for (Activation act : {Activation::silu, Activation::gelu_erf, Activation::gelu_tanh}) {
    CAPTURE(name(act));
    const ActValues v = kValues.at(act);
    check_close(activation_value(act, 2.0), v.at_2);
    check_close(activation_value(act, -1.0), v.at_m1);
    CHECK(activation_value(act, 2.0f) == doctest::Approx(v.at_2).epsilon(1e-6));
  }
}
