// The simulator's pipeline with its expert side on the GPU against the CPU, bit for bit at every
// stage (expert rows, per-slot outputs, combine, final), for every dispatch model with its
// correct pairing and with the seed's broken all-k flow. Token rows encode their origin
// (x[0] = rank, x[1] = token), so a row gathered from the wrong token shows.
#include <string>

#include "gpu_backend.hpp"
#include "gpu_compare.hpp"
#include "sim/sim_fixtures.hpp"
#include "simulate.hpp"

namespace {

using namespace moesim;
using namespace moesim::sim;

void check_pipeline(const Trace& trace, SimOptions o, const std::string& label) {
  const WeightProvider weights(trace);
  const ExpertMap map = make_expert_map(trace.config);
  const auto gpu = gpu::make_gpu_backend(trace, weights);
  o.threads = 2;
  const LayerRun a = simulate_layer(trace, 0, weights, map, o);
  o.backend = gpu.get();
  const LayerRun b = simulate_layer(trace, 0, weights, map, o);
  const std::size_t H = trace.config.hidden, K = trace.config.top_k;
  for (std::size_t r = 0; r < a.ranks.size(); ++r) {
    const std::string w = label + " " + std::string(name(o.numerics)) + " rank " + std::to_string(r);
    CHECK_SAME_BITS(a.ranks[r].expert_rows, b.ranks[r].expert_rows, H, w + " expert_rows");
    CHECK_SAME_BITS(a.ranks[r].expert_out, b.ranks[r].expert_out, K * H, w + " expert_out");
    CHECK_SAME_BITS(a.ranks[r].combine_out, b.ranks[r].combine_out, H, w + " combine_out");
    CHECK_SAME_BITS(a.ranks[r].final_out, b.ranks[r].final_out, H, w + " final_out");
  }
}

}  // namespace

TEST_CASE("every dispatch model's correct pairing, and every consumer x combine on MORI, on the GPU equal the CPU") {
  test::TraceShape shape;
  shape.hidden = 160;
  shape.inter = 48;
  shape.tokens = {13, 30, 0, 21};
  Trace trace = test::make_trace(shape);
  trace.config.num_shared_experts = 1;
  trace.config.shared_intermediate = 32;
  trace.config.routed_scaling_factor = 2.5;
  for (Numerics n : {Numerics::exact, Numerics::fp32, Numerics::bf16, Numerics::fp8})
    for (DispatchModel d :
         {DispatchModel::mori, DispatchModel::deepep_ht, DispatchModel::deepep_ll, DispatchModel::pplx, DispatchModel::pairs}) {
      SimOptions o;
      o.numerics = n;
      o.dispatch.model = d;
      o.consumer.model = default_consumer(d);
      o.combine = default_combine(d, "");
      check_pipeline(trace, o, std::string(name(d)));
      if (d != DispatchModel::mori) continue;
      // Flagged pairings run too (that is how real bugs are reproduced): every consumer with
      // every combine on MORI's layout, the seed's all-k flow and its variants among them.
      trace.config.mori.gpus_per_node = 2;  // internode-v1: two nodes of two ranks
      for (ConsumerModel cm : {ConsumerModel::aiter_mask, ConsumerModel::all_k, ConsumerModel::dedup_filter,
                               ConsumerModel::target_expert})
        for (CombineModel k : {CombineModel::rank_sum, CombineModel::weighted, CombineModel::internode_v1,
                               CombineModel::pair_sum}) {
          o.consumer.model = cm;
          o.combine = k;
          check_pipeline(trace, o, "mori " + std::string(name(cm)) + " " + std::string(name(k)));
        }
      trace.config.mori.gpus_per_node = 8;
    }
}
