#include "trace.hpp"

#include <array>

#include "error.hpp"

namespace moesim {

namespace {
constexpr std::array<std::pair<Activation, std::string_view>, 7> kActivations{{
    {Activation::silu_gated, "silu_and_mul"},
    {Activation::gelu_erf_gated, "gelu_and_mul"},
    {Activation::gelu_tanh_gated, "gelu_tanh_and_mul"},
    {Activation::silu, "silu"},
    {Activation::gelu_erf, "gelu"},
    {Activation::gelu_tanh, "gelu_tanh"},
    {Activation::swiglu_oai, "swiglu_oai_and_mul"},
}};
constexpr std::array<std::pair<PlacementKind, std::string_view>, 3> kPlacements{{
    {PlacementKind::contiguous, "contiguous"},
    {PlacementKind::explicit_map, "explicit"},
    {PlacementKind::eplb, "eplb"},
}};
}  // namespace

std::string_view name(Activation a) {
  for (auto& [k, n] : kActivations)
    if (k == a) return n;
  throw Error("unknown activation");
}

Activation parse_activation(std::string_view s) {
  for (auto& [k, n] : kActivations)
    if (n == s) return k;
  throw Error("unknown activation '" + std::string(s) +
              "' (expected silu_and_mul, gelu_and_mul, gelu_tanh_and_mul, swiglu_oai_and_mul, silu, gelu, gelu_tanh)");
}

bool is_gated(Activation a) {
  return a == Activation::silu_gated || a == Activation::gelu_erf_gated || a == Activation::gelu_tanh_gated ||
         a == Activation::swiglu_oai;
}

std::string_view name(PlacementKind k) {
  for (auto& [p, n] : kPlacements)
    if (p == k) return n;
  throw Error("unknown placement");
}

PlacementKind parse_placement(std::string_view s) {
  for (auto& [p, n] : kPlacements)
    if (n == s) return p;
  throw Error("unknown placement '" + std::string(s) + "' (expected contiguous, explicit, eplb)");
}

Placement contiguous_placement(int num_experts, int num_ranks) {
  Placement p;
  p.kind = PlacementKind::contiguous;
  p.num_logical = num_experts;
  const int per_rank = num_experts / num_ranks;
  p.expert_to_rank.resize(num_experts);
  p.physical_to_logical.resize(num_experts);
  for (int e = 0; e < num_experts; ++e) {
    p.expert_to_rank[e] = e / per_rank;
    p.physical_to_logical[e] = e;
  }
  return p;
}

bool Captured::empty() const {
  return recv_x.empty() && recv_scales.empty() && recv_topk_ids.empty() && recv_weights.empty() &&
         src_token_pos.empty() && total_recv < 0 && buffer_rows < 0 && expert_out.empty() && combine_out.empty() &&
         final_out.empty();
}

}  // namespace moesim
