// Expert products shared between the hypotheses of moesim diagnose (diagnose_products.hpp): the
// same figures, bit for bit, as every hypothesis computing its own.
#include <doctest/doctest.h>

#include "diagnose/diagnose_fixtures.hpp"

using namespace moesim;
using namespace moesim::sim;
using namespace moesim::test;

TEST_CASE("expert products shared between hypotheses: every figure identical to computing each anew") {
  Trace tr = make_trace(diagnose_shape());
  capture_run(tr, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::weighted));
  DiagnoseOptions none = diagnose_options();
  none.products_budget = 0;  // nothing stored: every hypothesis computes its own products
  const Diagnosis a = diagnose(tr, diagnose_options()), b = diagnose(tr, none);
  CHECK(a.products_reused > 0);
  CHECK(b.products_reused == 0);
  CHECK(a.products_computed < b.products_computed);
  CHECK(a.products_computed + a.products_reused == b.products_computed);
  REQUIRE(a.ranked.size() == b.ranked.size());
  for (std::size_t i = 0; i < a.ranked.size(); ++i) {
    const Evaluation &x = a.ranked[i], &y = b.ranked[i];
    CAPTURE(a.hypothesis(x).key);
    CHECK(a.hypothesis(x).key == b.hypothesis(y).key);
    for (int o = 0; o < kNumObs; ++o) {
      CHECK(x.obs[o].dd == y.obs[o].dd);
      CHECK(x.obs[o].cc == y.obs[o].cc);
      CHECK(x.obs[o].worst_ratio == y.obs[o].worst_ratio);
      CHECK(x.obs[o].first == y.obs[o].first);
    }
  }
}

TEST_CASE("the warm-up hypothesis computes one row per expert: the bits of computing every row of its copy") {
  for (Numerics num : {Numerics::fp32, Numerics::bf16}) {
    CAPTURE(name(num));
    Trace tr = make_trace(diagnose_shape());
    capture_run(tr, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
    DiagnoseOptions o = diagnose_options();
    o.base.numerics = num;
    const auto cat = catalog(tr.config, DispatchModel::mori, o.base);
    const auto h = std::find_if(cat.begin(), cat.end(), [](const Hypothesis& c) { return c.key == "warmup-identical-tokens"; });
    REQUIRE(h != cat.end());
    const ExpertMap map = make_expert_map(tr.config);
    const WeightProvider wp(tr);
    const auto cpu = make_cpu_backend(tr, wp);
    // The common row is a captured copy of a trace token: with a backend, that token is computed.
    for (bool with_backend : {false, true}) {
      CAPTURE(with_backend);
      Hypothesis hb = *h;
      hb.options.backend = with_backend ? cpu.get() : nullptr;
      const Prediction p = predict(tr, 0, hb, wp, map);
      REQUIRE(p.tested);
      REQUIRE(p.copy);
      SimOptions every = h->options;  // every row of the copy computed, no backend
      const WeightProvider cw(*p.copy);
      const LayerRun full = simulate_layer(*p.copy, 0, cw, map, every);
      for (int r = 0; r < tr.config.num_ranks; ++r) {
        CAPTURE(r);
        CHECK(p.ranks[r].expert_rows.f32 == full.ranks[r].expert_rows.f32);
        CHECK(p.ranks[r].expert_out.f32 == full.ranks[r].expert_out.f32);
        CHECK(p.ranks[r].final_out.f32 == full.ranks[r].final_out.f32);
        CHECK_FALSE(p.ranks[r].final_out.f32.empty());
      }
    }
  }
}
