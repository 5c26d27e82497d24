#include "trace_io.hpp"

#include <moesim/version.hpp>

#include "error.hpp"

namespace moesim {

std::string layer_path(int layer) { return "/layers/" + std::to_string(layer); }
std::string rank_path(int layer, int rank) { return layer_path(layer) + "/ranks/" + std::to_string(rank); }

void write_values(h5::File& file, const std::string& ds, const std::vector<std::uint64_t>& dims,
                  const std::vector<float>& values, DType dtype) {
  const std::string declared(name(dtype));
  switch (dtype) {
    case DType::f32:
      file.write(ds, dims, values.data());
      return;
    case DType::bf16:
    case DType::f16: {
      std::vector<std::uint16_t> bits(values.size());
      for (size_t i = 0; i < values.size(); ++i)
        bits[i] = dtype == DType::bf16 ? float_to_bf16_bits(values[i]) : float_to_f16_bits(values[i]);
      file.write(ds, dims, bits.data(), declared);
      return;
    }
    case DType::e4m3:
    case DType::e4m3fnuz: {
      std::vector<std::uint8_t> bits(values.size());
      for (size_t i = 0; i < values.size(); ++i) bits[i] = float_to_fp8_bits(values[i], dtype);
      file.write(ds, dims, bits.data(), declared);
      return;
    }
    default:
      file.fail(ds, "cannot store values as " + declared);
  }
}

namespace {
void write_spec(h5::File& f, const std::string& group, const GeneratorSpec& s) {
  f.create_group(group);
  f.set_attr(group, "seed", static_cast<std::int64_t>(s.seed));
  f.set_attr(group, "distribution", s.distribution);
  f.set_attr(group, "scale", s.scale);
}

void write_config(const TraceConfig& c, h5::File& f) {
  const std::string g = "/config";
  f.create_group(g);
  f.set_attr(g, "num_ranks", c.num_ranks);
  f.set_attr(g, "num_experts", c.num_experts);
  f.set_attr(g, "top_k", c.top_k);
  f.set_attr(g, "hidden", c.hidden);
  f.set_attr(g, "intermediate", c.intermediate);
  f.set_attr(g, "activation", std::string(name(c.activation)));
  f.set_attr(g, "token_dtype", std::string(name(c.token_dtype)));
  f.set_attr(g, "weight_dtype", std::string(name(c.weight_dtype)));
  f.set_attr(g, "scale_block", c.scale_block);
  f.set_attr(g, "num_shared_experts", c.num_shared_experts);
  f.set_attr(g, "shared_intermediate", c.shared_intermediate);
  f.set_attr(g, "routed_scaling_factor", c.routed_scaling_factor);
  f.set_attr(g, "router_weight_on_input", c.router_weight_on_input ? 1 : 0);
  f.set_attr(g, "library", c.library);
  f.set_attr(g, "library_version", c.library_version);
  f.set_attr(g, "topk_weights_include_scaling", c.topk_weights_include_scaling ? 1 : 0);
  f.set_attr(g, "expert_bias", c.expert_bias ? 1 : 0);
  f.set_attr(g, "shared_expert_gate", c.shared_expert_gate ? 1 : 0);
  if (c.activation == Activation::swiglu_oai) {
    f.set_attr(g, "swiglu_alpha", c.swiglu_alpha);
    f.set_attr(g, "swiglu_limit", c.swiglu_limit);
  }

  const std::string p = g + "/placement";
  f.create_group(p);
  f.set_attr(p, "kind", std::string(name(c.placement.kind)));
  f.set_attr(p, "num_logical", c.placement.num_logical);
  if (c.placement.kind != PlacementKind::contiguous) {
    const std::vector<std::uint64_t> dims{static_cast<std::uint64_t>(c.num_experts)};
    f.write(p + "/expert_to_rank", dims, c.placement.expert_to_rank.data());
    f.write(p + "/physical_to_logical", dims, c.placement.physical_to_logical.data());
  }

  const std::string m = g + "/mori";
  f.create_group(m);
  f.set_attr(m, "max_num_inp_token_per_rank", c.mori.max_num_inp_token_per_rank);
  f.set_attr(m, "max_total_recv_tokens", c.mori.max_total_recv_tokens);
  f.set_attr(m, "kernel_type", c.mori.kernel_type);
  f.set_attr(m, "gpus_per_node", c.mori.gpus_per_node);

  const std::string s = g + "/library_settings";
  f.create_group(s);
  for (const auto& [k, v] : c.library_settings) f.set_attr(s, k, v);
}

void write_captured(const TraceConfig& c, const RankInput& r, h5::File& f, const std::string& base) {
  const Captured& cap = r.captured;
  if (cap.empty()) return;
  const std::string g = base + "/captured";
  f.create_group(g);
  const auto H = static_cast<std::uint64_t>(c.hidden), K = static_cast<std::uint64_t>(c.top_k);
  const auto S = static_cast<std::uint64_t>(c.scales_per_token());
  const auto N = static_cast<std::uint64_t>(cap.rows), T = static_cast<std::uint64_t>(r.num_tokens);
  if (cap.total_recv >= 0) f.set_attr(g, "total_recv", cap.total_recv);
  if (cap.buffer_rows >= 0) f.set_attr(g, "buffer_rows", cap.buffer_rows);
  auto axes = [&](const std::string& ds, const char* a) { f.set_attr(g + "/" + ds, "axes", a); };
  if (!cap.recv_x.empty()) {
    write_values(f, g + "/recv_x", {N, H}, cap.recv_x, c.token_dtype);
    axes("recv_x", "row,hidden");
  }
  if (!cap.recv_scales.empty()) {
    f.write(g + "/recv_scales", {N, S}, cap.recv_scales.data());
    axes("recv_scales", "row,block");
  }
  if (!cap.recv_topk_ids.empty()) {
    f.write(g + "/recv_topk_ids", {N, K}, cap.recv_topk_ids.data());
    axes("recv_topk_ids", "row,slot");
  }
  if (!cap.recv_weights.empty()) {
    f.write(g + "/recv_weights", {N, K}, cap.recv_weights.data());
    axes("recv_weights", "row,slot");
  }
  if (!cap.src_token_pos.empty()) {
    f.write(g + "/src_token_pos", {cap.src_token_pos.size()}, cap.src_token_pos.data());
    f.set_attr(g + "/src_token_pos", "encoding", cap.src_pos_encoding);
    axes("src_token_pos", "row");
  }
  if (!cap.expert_out.empty()) {
    f.write(g + "/expert_out", {static_cast<std::uint64_t>(cap.expert_rows), H}, cap.expert_out.data());
    axes("expert_out", "row,hidden");
  }
  if (!cap.combine_out.empty()) {
    f.write(g + "/combine_out", {T, H}, cap.combine_out.data());
    axes("combine_out", "token,hidden");
  }
  if (!cap.final_out.empty()) {
    f.write(g + "/final_out", {T, H}, cap.final_out.data());
    axes("final_out", "token,hidden");
  }
}

void write_weights(const TraceConfig& c, const ExpertWeights& w, h5::File& f, const std::string& base) {
  const auto H = static_cast<std::uint64_t>(c.hidden), I = static_cast<std::uint64_t>(c.intermediate);
  const auto L = static_cast<std::uint64_t>(c.placement.num_logical);
  const std::uint64_t rows1 = is_gated(c.activation) ? 2 * I : I;
  write_values(f, base + "/w1", {L, rows1, H}, w.w1, c.weight_dtype);
  write_values(f, base + "/w2", {L, H, I}, w.w2, c.weight_dtype);
  if (c.num_shared_experts > 0) {
    const auto S = static_cast<std::uint64_t>(c.num_shared_experts);
    const auto Is = static_cast<std::uint64_t>(c.shared_intermediate);
    write_values(f, base + "/shared_w1", {S, is_gated(c.activation) ? 2 * Is : Is, H}, w.shared_w1,
                 c.weight_dtype);
    write_values(f, base + "/shared_w2", {S, H, Is}, w.shared_w2, c.weight_dtype);
  }
  if (c.expert_bias) {
    if (w.b1.size() != L * rows1 || w.b2.size() != L * H) throw Error(where(f.path(), base) + "expert biases have the wrong size");
    write_values(f, base + "/b1", {L, rows1}, w.b1, c.weight_dtype);
    write_values(f, base + "/b2", {L, H}, w.b2, c.weight_dtype);
    if (c.num_shared_experts > 0) {
      const auto S = static_cast<std::uint64_t>(c.num_shared_experts);
      const auto Is = static_cast<std::uint64_t>(c.shared_intermediate);
      write_values(f, base + "/shared_b1", {S, is_gated(c.activation) ? 2 * Is : Is}, w.shared_b1, c.weight_dtype);
      write_values(f, base + "/shared_b2", {S, H}, w.shared_b2, c.weight_dtype);
    }
  }
  if (c.shared_expert_gate) write_values(f, base + "/shared_gate", {H}, w.shared_gate, c.weight_dtype);
}
}  // namespace

void write_trace_into(const Trace& t, h5::File& f) {
  const TraceConfig& c = t.config;
  f.set_attr("/", "format", kTraceFormat);
  f.set_attr("/", "schema_version", kSchemaVersion);
  f.set_attr("/", "moesim_version", std::string(version));
  f.set_attr("/", "command", t.command);
  write_config(c, f);
  write_spec(f, "/generator/weights", t.weight_spec);
  if (t.x_spec) write_spec(f, "/generator/x", *t.x_spec);
  f.create_group("/layers");
  f.set_attr("/layers", "num_layers", static_cast<int>(t.layers.size()));
  const auto H = static_cast<std::uint64_t>(c.hidden), K = static_cast<std::uint64_t>(c.top_k);
  for (const Layer& layer : t.layers) {
    const std::string lp = layer_path(layer.index);
    f.create_group(lp);
    f.set_attr(lp, "step", layer.step);
    if (layer.weights) write_weights(c, *layer.weights, f, lp + "/weights");
    for (int r = 0; r < static_cast<int>(layer.ranks.size()); ++r) {
      const RankInput& in = layer.ranks[r];
      const std::string rp = rank_path(layer.index, r);
      const auto T = static_cast<std::uint64_t>(in.num_tokens);
      f.create_group(rp);
      f.set_attr(rp, "num_tokens", in.num_tokens);
      if (!t.x_spec) {
        write_values(f, rp + "/x", {T, H}, in.x, c.token_dtype);
        f.set_attr(rp + "/x", "axes", "token,hidden");
        if (is_fp8(c.token_dtype)) {
          f.write(rp + "/x_scales", {T, static_cast<std::uint64_t>(c.scales_per_token())}, in.x_scales.data());
          f.set_attr(rp + "/x_scales", "axes", "token,block");
        }
      }
      f.write(rp + "/topk_ids", {T, K}, in.topk_ids.data());
      f.set_attr(rp + "/topk_ids", "axes", "token,slot");
      f.write(rp + "/topk_weights", {T, K}, in.topk_weights.data());
      f.set_attr(rp + "/topk_weights", "axes", "token,slot");
      write_captured(c, in, f, rp);
    }
  }
}

void write_trace(const Trace& trace, const std::string& path) {
  h5::AtomicOutput out(path);
  write_trace_into(trace, out.file());
  out.commit();
}

}  // namespace moesim
