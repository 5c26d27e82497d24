#pragma once
// Consumer models: what the expert side of an integration computes from the rows its rank got.
// A consumer turns each received row into jobs (slot, expert, weight); expert_side.cpp runs the
// jobs through the reference's expert FFN and sums each row's jobs with the reference's
// combine primitive. Planning is separate from computing so --routing-only counts the same jobs.
#include <cstdint>
#include <string_view>

#include "dispatch.hpp"
#include "expert_map.hpp"

namespace moesim::sim {

enum class ConsumerModel { aiter_mask, deepep_local, per_expert, all_k, dedup_filter, target_expert, identity };
std::string_view name(ConsumerModel m);
ConsumerModel parse_consumer(std::string_view s);

// all-k: what happens to an id outside the rank after `id - rank * (E / R)`:
// wrap it modulo E_local, clamp it into [0, E_local), or mask it out.
enum class NonLocal { wrap, clamp, mask };
std::string_view name(NonLocal n);
NonLocal parse_non_local(std::string_view s);

struct ConsumerOptions {
  ConsumerModel model = ConsumerModel::aiter_mask;
  NonLocal non_local = NonLocal::wrap;
  // aiter-mask and all-k on flat layouts: read all buffer_rows rows instead of the first
  // total_recv (AITER's num_local_tokens not passed). Rows past total_recv are modelled as a
  // freshly zeroed buffer: zero x, ids 0, weights 0. They cost computations and, because every
  // activation maps 0 to 0, add nothing, so their whole effect shows in the statistics.
  bool whole_buffer = false;
};

struct Job {
  int slot = 0;      // the slot of the row whose weight (and expert_out entry) the job stands for
  int expert = 0;    // physical expert computed
  bool weighted = false;
};

// Jobs of one row, at most K. `first_of_source` is false for a later row of a source token
// already seen on this rank (dedup-filter computes once per source token).
//  aiter-mask (ROCm/aiter aiter/fused_moe.py, expert_mask over global ids, weights in stage 2):
//    ids read as global; a slot counts when its expert is on this rank.
//  deepep-local (DeepEP HT integrations): ids read as local, -1 skipped; ids past E_local are
//    out of the expert table and skipped.
//  per-expert (DeepEP LL / pplx expert-major buffers): the row's own expert, unweighted.
//  all-k (the seed's broken flow): every id of the row after the global-to-local remap.
//  dedup-filter (the seed's option A): once per source token, the local slots of its global ids.
//  target-expert (the seed's option B): the row's target expert, weighted by its slot's weight.
//  identity (MORI's and DeepEP's combine tests): no expert math, no jobs; every row returns the
//    row its expert would see (expert_input_row, no router weight), unweighted.
int plan_row(const ConsumerOptions& o, const ExpertMap& map, int dest, int K, const std::int32_t* ids, int target,
             int slot, bool first_of_source, Job* out);

// Whether rows [total_recv, buffer_rows) are read by this consumer on this layout.
bool reads_stale_rows(const ConsumerOptions& o, DispatchModel m);

}  // namespace moesim::sim
