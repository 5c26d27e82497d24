#pragma once
// Synthetic traces (`moesim gen`): routing patterns, token counts, placements and tensors,
// every value a pure function of the options (traces/SCHEMA.md, "Generated traces").
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "trace.hpp"

namespace moesim {

// How each token's top-k experts are picked.
//   uniform      K distinct experts, uniformly without replacement
//   zipf         without replacement, expert of popularity rank p drawn with weight 1/(p+1)^zipf_s
//   grouped      DeepSeek group-limited top-k: best topk_group of n_group groups, then top-k inside
//   hot          num_hot experts are hot_factor times as likely as the others
//   all_to_one   K distinct experts, all on rank 0
//   round_robin  slot j of token t on rank r: ((r * max_tokens + t) * K + j) mod E (MORI's test)
//   spread       slot j on rank j mod R, so a token reaches min(K, R) ranks
enum class Routing { uniform, zipf, grouped, hot, all_to_one, round_robin, spread };
std::string_view name(Routing r);
Routing parse_routing(std::string_view s);

// Router scores turned into topk_weights: softmax over the candidates, or per-expert sigmoid.
enum class Scoring { softmax, sigmoid };
std::string_view name(Scoring s);
Scoring parse_scoring(std::string_view s);

struct GenOptions {
  std::uint64_t seed = 1;
  int num_ranks = 4;
  int num_experts = 16;  // physical ids seen by dispatch
  int top_k = 4;
  int hidden = 128;
  int intermediate = 64;
  int num_layers = 1;
  int tokens_per_rank = 32;
  int tokens_max = 0;  // > tokens_per_rank: each rank's count uniform in [tokens_per_rank, tokens_max]
  Activation activation = Activation::silu_gated;
  DType token_dtype = DType::bf16;
  DType weight_dtype = DType::bf16;
  int scale_block = 128;

  Routing routing = Routing::uniform;
  double zipf_s = 1.0;
  int n_group = 8;
  int topk_group = 4;
  int num_hot = 1;
  double hot_factor = 10.0;
  double sentinel_rate = 0.0;  // each slot independently becomes -1 (weight 0) with this probability
  Scoring scoring = Scoring::softmax;
  bool normalize = true;  // divide the K weights by their sum (before sentinels)

  PlacementKind placement = PlacementKind::contiguous;
  int num_logical = 0;  // eplb: logical experts behind the E physical slots (0: E / 2)
  int num_shared_experts = 0;
  int shared_intermediate = 0;  // 0: intermediate
  double routed_scaling_factor = 1.0;
  std::int64_t mori_max_tokens = 0;  // MORI's max_num_inp_token_per_rank; 0: the largest rank's count

  bool store_weights = false;  // false: weights generated from weight_spec when read
  bool store_x = true;         // false: x generated from x_spec when read
  // Distribution and scale of the tensors; their seeds are `seed` unless given here.
  GeneratorSpec weight_spec{0, "uniform", 1.0};
  GeneratorSpec x_spec{0, "normal", 1.0};
  std::optional<std::uint64_t> weight_seed, x_seed;
};

// Throws Error naming the offending option when the options cannot make a valid trace.
Trace generate(const GenOptions& options);

// The placement generate() uses: contiguous, a seeded permutation of it, or eplb replicas.
Placement make_placement(const GenOptions& options);

}  // namespace moesim
