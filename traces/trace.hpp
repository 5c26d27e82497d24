#pragma once
// The in-memory form of a moesim trace (traces/SCHEMA.md, schema v2; v1 files read too): the configuration of
// one expert-parallel MoE layer, the routing each rank fed to dispatch, and whatever the user
// captured of the receive side. Shapes are row-major, as stored.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dtype.hpp"

namespace moesim {

// swiglu_oai: GPT-OSS's clamped SwiGLU, gated, with TraceConfig::swiglu_alpha and swiglu_limit.
enum class Activation { silu_gated, gelu_erf_gated, gelu_tanh_gated, silu, gelu_erf, gelu_tanh, swiglu_oai };
std::string_view name(Activation a);
Activation parse_activation(std::string_view s);  // throws Error on an unknown name
bool is_gated(Activation a);

// Where each expert id lives. Ids seen by dispatch are "physical" slots; with EPLB several
// physical slots may hold replicas of one logical expert, whose weights they share.
enum class PlacementKind { contiguous, explicit_map, eplb };
std::string_view name(PlacementKind k);
PlacementKind parse_placement(std::string_view s);

struct Placement {
  PlacementKind kind = PlacementKind::contiguous;
  std::vector<std::int32_t> expert_to_rank;       // [E]; contiguous: e / (E / R)
  std::vector<std::int32_t> physical_to_logical;  // [E]; identity unless eplb
  int num_logical = 0;                            // logical experts (weights are indexed by these)
};

// Settings a MORI capture came with (python/mori/ops/dispatch_combine.py); 0 means unset.
struct MoriSettings {
  std::int64_t max_num_inp_token_per_rank = 0;
  std::int64_t max_total_recv_tokens = 0;
  std::string kernel_type = "IntraNode";
  int gpus_per_node = 8;  // InterNode kernels: ranks [n*g, (n+1)*g) form node n
};

// A tensor that is stored, or generated from a seed when it is not (so a DeepSeek-V3-sized
// layer needs no stored weights). Values: distribution with unit variance, times
// scale / sqrt(fan_in) for weights and times scale for inputs.
struct GeneratorSpec {
  std::uint64_t seed = 0;
  std::string distribution = "uniform";  // "uniform" or "normal"
  double scale = 1.0;
};

struct TraceConfig {
  int num_ranks = 0;
  int num_experts = 0;  // E: physical expert ids seen by dispatch
  int top_k = 0;
  int hidden = 0;        // H
  int intermediate = 0;  // I
  Activation activation = Activation::silu_gated;
  DType token_dtype = DType::bf16;   // f32, bf16, e4m3 or e4m3fnuz
  DType weight_dtype = DType::bf16;  // f32 or bf16
  int scale_block = 128;             // fp8 tokens: one fp32 scale per 1 x scale_block block
  Placement placement;
  int num_shared_experts = 0;
  int shared_intermediate = 0;
  double routed_scaling_factor = 1.0;
  bool router_weight_on_input = false;  // vLLM's apply_router_weight_on_input
  // The stored topk_weights already hold routed_scaling_factor (DeepSeek-V2/V3, dots1, GLM4-MoE,
  // LFM2 routers multiply before returning them): combine must not apply it again.
  bool topk_weights_include_scaling = false;
  bool expert_bias = false;         // stored weights carry b1/b2 (GPT-OSS): added after each GEMM
  bool shared_expert_gate = false;  // shared output scaled by sigmoid(x . shared_gate) (Qwen2-MoE)
  double swiglu_alpha = 1.702;      // swiglu_oai only
  double swiglu_limit = 7.0;
  std::string library;                  // what a capture came from: "mori", "deepep", "pplx", "" (synthetic)
  std::string library_version;
  MoriSettings mori;
  std::map<std::string, std::string> library_settings;  // anything else the capture recorded

  int experts_per_rank() const { return num_experts / num_ranks; }
  int scales_per_token() const { return (hidden + scale_block - 1) / scale_block; }
  int rank_of(int expert) const { return placement.expert_to_rank[expert]; }
  int logical_of(int expert) const { return placement.physical_to_logical[expert]; }
};

// What was captured on one rank's receive side, each part optional.
struct Captured {
  std::vector<float> recv_x;             // [buffer_rows or total_recv, H], token dtype values
  std::vector<float> recv_scales;        // [rows, H/scale_block]
  std::vector<std::int32_t> recv_topk_ids;  // [rows, K]
  std::vector<float> recv_weights;       // [rows, K]
  std::vector<std::int64_t> src_token_pos;  // [total_recv]
  std::string src_pos_encoding;          // "flat" (srcPe*MaxNumTokensToSend+t), "legacy", "pair"
  std::int64_t total_recv = -1;          // -1: not captured
  std::int64_t buffer_rows = -1;         // rows of the full receive buffer
  std::vector<float> expert_out;         // [rows, H] what the expert side returned per row
  std::vector<float> combine_out;        // [T, H]
  std::vector<float> final_out;          // [T, H]
  std::int64_t rows = 0;                 // rows held by the recv_* datasets
  std::int64_t expert_rows = 0;          // rows of expert_out
  bool empty() const;
};

struct RankInput {
  std::int64_t num_tokens = 0;
  std::vector<float> x;         // [T, H] token dtype values; empty when not loaded
  std::vector<float> x_scales;  // [T, H/scale_block] fp8 tokens only
  std::vector<std::int32_t> topk_ids;  // [T, K] physical ids, -1 for "no expert"
  std::vector<float> topk_weights;     // [T, K]
  Captured captured;
};

struct ExpertWeights {
  std::vector<float> w1;         // [E_logical, 2I or I, H] gate rows then up rows
  std::vector<float> w2;         // [E_logical, H, I]
  std::vector<float> shared_w1;  // [S, 2Is or Is, H]
  std::vector<float> shared_w2;  // [S, H, Is]
  std::vector<float> b1, b2;                // expert_bias: [E_logical, 2I or I], [E_logical, H]
  std::vector<float> shared_b1, shared_b2;  // expert_bias and S > 0: [S, 2Is or Is], [S, H]
  std::vector<float> shared_gate;           // shared_expert_gate: [H]
};

struct Layer {
  int index = 0;
  int step = 0;
  std::vector<RankInput> ranks;
  std::optional<ExpertWeights> weights;  // stored weights; generated from weight_spec otherwise
};

struct Trace {
  TraceConfig config;
  GeneratorSpec weight_spec;
  std::optional<GeneratorSpec> x_spec;  // inputs generated rather than stored
  std::vector<Layer> layers;
  std::string command;  // the moesim gen command that made it, when it did
  std::string path;     // the file it was read from
  int schema_version = 2;  // the file's (1 or 2); what the writer writes is always 2
};

// Builds the contiguous placement for num_experts over num_ranks.
Placement contiguous_placement(int num_experts, int num_ranks);

}  // namespace moesim
