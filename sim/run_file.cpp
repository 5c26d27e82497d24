#include "run_file.hpp"

#include <algorithm>

#include "golden.hpp"
#include "h5.hpp"
#include "trace_io.hpp"

namespace moesim::sim {

namespace {

template <class T>
void write_plain(h5::File& f, const std::string& ds, const std::vector<std::uint64_t>& dims, const std::vector<T>& v,
                 const char* stage, const char* axes) {
  f.write(ds, dims, v.data());
  f.set_attr(ds, "stage", stage);
  f.set_attr(ds, "axes", axes);
}

void write_counts(h5::File& f, const std::string& ds, const std::vector<std::int64_t>& v, const char* axes) {
  f.write(ds, {static_cast<std::uint64_t>(v.size())}, v.data());
  f.set_attr(ds, "axes", axes);
}

}  // namespace

void write_stats(h5::File& f, int layer_index, const RoutingStats& s) {
  const std::string g = "/stats/layers/" + std::to_string(layer_index);
  f.create_group(g);
  write_counts(f, g + "/rows_per_rank", s.rows_per_rank, "rank");
  write_counts(f, g + "/sources_per_rank", s.sources_per_rank, "rank");
  write_counts(f, g + "/overflow_per_rank", s.overflow_per_rank, "rank");
  write_counts(f, g + "/stale_rows_per_rank", s.stale_rows_per_rank, "rank");
  write_counts(f, g + "/buffer_rows_per_rank", s.buffer_rows_per_rank, "rank");
  write_counts(f, g + "/needed_per_rank", s.needed_per_rank, "rank");
  write_counts(f, g + "/performed_per_rank", s.performed_per_rank, "rank");
  write_counts(f, g + "/rows_per_expert", s.rows_per_expert, "expert");
  write_counts(f, g + "/needed_per_expert", s.needed_per_expert, "expert");
  write_counts(f, g + "/performed_per_expert", s.performed_per_expert, "expert");
  const auto R = static_cast<std::uint64_t>(s.num_ranks);
  f.write(g + "/dispatch_bytes", {R, R}, s.dispatch_bytes.data());
  f.set_attr(g + "/dispatch_bytes", "axes", "src_rank,dest_rank");
  f.write(g + "/combine_bytes", {R, R}, s.combine_bytes.data());
  f.set_attr(g + "/combine_bytes", "axes", "dest_rank,src_rank");
  f.set_attr(g, "tokens", s.tokens);
  f.set_attr(g, "pairs", s.pairs);
  f.set_attr(g, "rows", s.total_rows());
  f.set_attr(g, "overflow_rows", s.total_overflow());
  f.set_attr(g, "needed", s.total_needed());
  f.set_attr(g, "performed", s.total_performed());
  f.set_attr(g, "duplication_factor", s.duplication());
  f.set_attr(g, "waste_factor", s.waste());
  f.set_attr(g, "rank_imbalance", RoutingStats::imbalance(s.rows_per_rank));
  f.set_attr(g, "expert_imbalance", RoutingStats::imbalance(s.needed_per_expert));
}

namespace {
void write_header(h5::File& f, const Trace& trace, const RunDescription& d) {
  const SimOptions& o = d.options;
  write_result_header(f, kRunFormat, o.numerics, trace, d.command, d.backend, o.fp8_format);
  f.set_attr("/", "dispatch", std::string(name(o.dispatch.model)));
  f.set_attr("/", "consumer", std::string(name(o.consumer.model)));
  f.set_attr("/", "combine", std::string(name(o.combine)));
  f.set_attr("/", "deepep_version", std::string(name(o.deepep_version)));
  f.set_attr("/", "rank_sum_order", std::string(name(rank_order(o.dispatch.model, o.deepep_version))));
  f.set_attr("/", "ids", o.logical_ids ? "logical" : "physical");
  f.set_attr("/", "combine_quant", std::string(name(o.combine_quant.type)));
  if (o.combine_quant.type != CombineQuant::none)
    f.set_attr("/", "combine_fp8_format", std::string(name(o.combine_quant.fp8)));
  if (o.combine_quant.type == CombineQuant::fp8_blockwise) f.set_attr("/", "combine_scale_dim", o.combine_quant.scale_dim);
  f.set_attr("/", "pairing", d.verdict.correct ? "correct" : "flagged");
  std::string reasons;
  for (const auto& r : d.verdict.reasons) reasons += (reasons.empty() ? "" : "\n") + r;
  f.set_attr("/", "pairing_reasons", reasons);
  f.set_attr("/", "correct_pairings", d.verdict.correct_pairings);
}
}  // namespace

void write_routing_only(const std::string& out_path, const Trace& trace, const std::vector<RoutingStats>& stats,
                        const std::vector<int>& layer_indices, const RunDescription& d) {
  h5::AtomicOutput out(out_path);
  write_header(out.file(), trace, d);
  out.file().set_attr("/", "routing_only", 1);
  for (std::size_t i = 0; i < stats.size(); ++i) write_stats(out.file(), layer_indices[i], stats[i]);
  out.commit();
}

void write_run(const std::string& out_path, const Trace& trace, const std::vector<LayerRun>& layers,
               const RunDescription& d) {
  const TraceConfig& c = trace.config;
  const SimOptions& o = d.options;
  const auto H = static_cast<std::uint64_t>(c.hidden), K = static_cast<std::uint64_t>(c.top_k);
  const auto S = static_cast<std::uint64_t>(c.scales_per_token());
  h5::AtomicOutput out(out_path);
  h5::File& f = out.file();
  write_header(f, trace, d);

  std::vector<LayerOutputs> golden(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    golden[l].layer_index = layers[l].layer_index;
    golden[l].ranks.resize(layers[l].ranks.size());
    for (std::size_t r = 0; r < layers[l].ranks.size(); ++r) {
      golden[l].ranks[r].num_tokens = trace.layers[l].ranks[r].num_tokens;
      golden[l].ranks[r].final_out = layers[l].ranks[r].final_out;
      golden[l].ranks[r].expert_out = layers[l].ranks[r].expert_out;
    }
  }
  write_reference_outputs(f, trace, golden, o.numerics);

  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerRun& run = layers[l];
    const Layer& layer = trace.layers[l];
    for (int r = 0; r < c.num_ranks; ++r) {
      const RecvBuffer& b = run.dispatch.ranks[r];
      const std::string rp = rank_path(run.layer_index, r), dp = rp + "/dispatch";
      const auto N = static_cast<std::uint64_t>(b.total_recv);
      f.create_group(dp);
      f.set_attr(dp, "total_recv", b.total_recv);
      f.set_attr(dp, "buffer_rows", b.buffer_rows);
      f.set_attr(dp, "overflow_rows", b.overflow);
      f.set_attr(dp, "max_tokens", run.dispatch.max_tokens);  // sizes and src_token_pos use it
      f.set_attr(dp, "id_space", std::string(name(id_space(o.dispatch.model))));
      f.set_attr(dp, "stage", "dispatch");
      // recv_x: each row's source tokens, bit for bit (dispatch copies them).
      std::vector<float> x(N * H), sc(is_fp8(c.token_dtype) ? N * S : 0);
      for (std::uint64_t i = 0; i < N; ++i) {
        const RankInput& src = layer.ranks[b.src_rank[i]];
        std::copy_n(&src.x[b.src_token[i] * H], H, &x[i * H]);
        if (!sc.empty()) std::copy_n(&src.x_scales[b.src_token[i] * S], S, &sc[i * S]);
      }
      write_values(f, dp + "/recv_x", {N, H}, x, c.token_dtype);
      f.set_attr(dp + "/recv_x", "stage", "dispatch");
      f.set_attr(dp + "/recv_x", "axes", "row,hidden");
      if (!sc.empty()) write_plain(f, dp + "/recv_scales", {N, S}, sc, "dispatch", "row,scale");
      write_plain(f, dp + "/recv_topk_ids", {N, K}, b.ids, "dispatch", "row,slot");
      write_plain(f, dp + "/recv_weights", {N, K}, b.weights, "dispatch", "row,slot");
      write_plain(f, dp + "/src_rank", {N}, b.src_rank, "dispatch", "row");
      write_plain(f, dp + "/src_token", {N}, b.src_token, "dispatch", "row");
      write_plain(f, dp + "/src_token_pos", {N}, b.src_pos, "dispatch", "row");
      f.set_attr(dp + "/src_token_pos", "encoding",
                 std::string(name(rank_dedup(o.dispatch.model) ? o.dispatch.encoding : SrcPosEncoding::pair)));
      write_plain(f, dp + "/target_expert", {N}, b.target, "dispatch", "row");
      if (!b.expert_begin.empty()) {
        const auto E_local = static_cast<std::uint64_t>(b.expert_begin.size() - 1);
        write_plain(f, dp + "/expert_begin", {E_local + 1}, b.expert_begin, "dispatch", "local_expert");
        if (o.dispatch.model == DispatchModel::deepep_ll) {
          // What DeepEP's low_latency_dispatch returns beside recv_x (its handle and recv_count).
          std::vector<std::int32_t> count(E_local);
          for (std::uint64_t e = 0; e < E_local; ++e)
            count[e] = static_cast<std::int32_t>(b.expert_begin[e + 1] - b.expert_begin[e]);
          write_plain(f, dp + "/packed_recv_count", {E_local}, count, "dispatch", "local_expert");
          write_plain(f, dp + "/layout_range", {E_local, static_cast<std::uint64_t>(c.num_ranks)}, b.layout_range,
                      "dispatch", "local_expert,src_rank");
          write_plain(f, dp + "/src_info", {N}, b.src_token, "dispatch", "row");
        }
      }
      write_output(f, rp + "/expert_rows", {N, H}, run.ranks[r].expert_rows, o.numerics, "expert", "row,hidden");
      const auto T = static_cast<std::uint64_t>(layer.ranks[r].num_tokens);
      write_output(f, rp + "/combine_out", {T, H}, run.ranks[r].combine_out, o.numerics, "combine", "token,hidden");
      if (o.dispatch.model == DispatchModel::mori && o.combine == CombineModel::rank_sum)
        write_plain(f, rp + "/combine_weights", {T, K}, run.ranks[r].combine_weights, "combine", "token,slot");
    }
    write_stats(f, run.layer_index, run.stats);
  }
  out.commit();
}

}  // namespace moesim::sim
