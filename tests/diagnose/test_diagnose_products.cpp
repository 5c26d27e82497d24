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
