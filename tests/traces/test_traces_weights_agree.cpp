// The generator's stored weights and the reference's weights generated from the seed are the
// same numbers: a trace may switch between --weights stored and --weights seed freely.
#include <doctest/doctest.h>

#include "expert_weights.hpp"
#include "generate.hpp"
#include "weights.hpp"  // reference/weights.hpp: WeightProvider

using namespace moesim;

TEST_CASE("stored weights from gen equal the reference's seed-generated weights") {
  GenOptions o;
  o.num_layers = 2;
  o.num_shared_experts = 1;
  o.shared_intermediate = 24;
  o.weight_spec.distribution = "normal";
  o.weight_seed = 77;
  o.placement = PlacementKind::eplb;
  o.num_logical = 12;
  const Trace seeded = generate(o);  // weights left to the seed
  REQUIRE_FALSE(seeded.layers[1].weights.has_value());
  const WeightProvider provider(seeded);
  const ExpertWeights stored = generate_weights(seeded.config, seeded.weight_spec, 1);
  const std::size_t n1 = 2 * 64 * 128, n2 = 128 * 64;
  for (int e : {0, 5, 11}) {
    CAPTURE(e);
    const ExpertMatrices m = provider.routed(1, e);
    REQUIRE(m.w1.size() == n1);
    CHECK(std::equal(m.w1.begin(), m.w1.end(), stored.w1.begin() + e * n1));
    CHECK(std::equal(m.w2.begin(), m.w2.end(), stored.w2.begin() + e * n2));
  }
  const ExpertMatrices s = provider.shared(1, 0);
  CHECK(s.w1 == stored.shared_w1);
  CHECK(s.w2 == stored.shared_w2);
}
