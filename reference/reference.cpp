#include "reference.hpp"

#include <algorithm>
#include <string>

#include "error.hpp"
#include "parallel.hpp"
#include "trace_io.hpp"

namespace moesim {
namespace {

constexpr std::size_t kGatherRows = 1024;  // rows gathered per pass of one expert

struct RowRef {  // one (rank, token, slot) routed to an expert
  int rank;
  std::int64_t token;
  int slot;
};

void check_rank(const Trace& trace, int layer_pos, int r) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers[layer_pos];
  const RankInput& in = layer.ranks[r];
  const std::string base = rank_path(layer.index, r);
  const auto T = static_cast<std::size_t>(in.num_tokens);
  if (in.x.size() != T * c.hidden) throw Error(where(trace.path, base + "/x") + "not loaded or wrong size");
  if (is_fp8(c.token_dtype) && in.x_scales.size() != T * c.scales_per_token())
    throw Error(where(trace.path, base + "/x_scales") + "not loaded or wrong size");
  if (in.topk_ids.size() != T * c.top_k || in.topk_weights.size() != T * c.top_k)
    throw Error(where(trace.path, base + "/topk_ids") + "wrong size");
  for (std::size_t i = 0; i < in.topk_ids.size(); ++i) {
    const int id = in.topk_ids[i];
    if (id >= c.num_experts || id < -1)
      throw Error(where(trace.path, base + "/topk_ids") + "id " + std::to_string(id) + " at token " +
                  std::to_string(i / c.top_k) + " slot " + std::to_string(i % c.top_k) + " out of range [-1, " +
                  std::to_string(c.num_experts) + ")");
  }
}

void check_placement(const Trace& trace) {
  const Placement& p = trace.config.placement;
  const std::string ds = "/config/placement/physical_to_logical";
  if (p.physical_to_logical.size() != static_cast<std::size_t>(trace.config.num_experts))
    throw Error(where(trace.path, ds) + "has " + std::to_string(p.physical_to_logical.size()) + " entries, expected " +
                std::to_string(trace.config.num_experts));
  for (std::size_t e = 0; e < p.physical_to_logical.size(); ++e)
    if (p.physical_to_logical[e] < 0 || p.physical_to_logical[e] >= p.num_logical)
      throw Error(where(trace.path, ds) + "entry " + std::to_string(e) + " names logical expert " +
                  std::to_string(p.physical_to_logical[e]) + ", outside [0, " + std::to_string(p.num_logical) + ")");
}

template <class T>
std::vector<T>& storage(Values& v);
template <>
std::vector<double>& storage<double>(Values& v) {
  return v.f64;
}
template <>
std::vector<float>& storage<float>(Values& v) {
  return v.f32;
}

template <class T>
LayerOutputs run_typed(const Trace& trace, int layer_pos, const WeightProvider& weights,
                       const ReferenceOptions& options) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers[layer_pos];
  const int R = static_cast<int>(layer.ranks.size()), K = c.top_k, H = c.hidden, S = c.num_shared_experts;
  const std::size_t Hs = static_cast<std::size_t>(H);
  check_placement(trace);
  for (int r = 0; r < R; ++r) check_rank(trace, layer_pos, r);

  // Rows of each logical expert in (rank, token, slot) order.
  std::vector<std::vector<RowRef>> rows(static_cast<std::size_t>(c.placement.num_logical));
  for (int r = 0; r < R; ++r) {
    const RankInput& in = layer.ranks[r];
    for (std::int64_t t = 0; t < in.num_tokens; ++t)
      for (int k = 0; k < K; ++k) {
        const int id = in.topk_ids[t * K + k];
        if (id >= 0) rows[c.logical_of(id)].push_back({r, t, k});
      }
  }

  LayerOutputs out;
  out.layer_index = layer.index;
  out.ranks.resize(R);
  std::vector<std::vector<std::vector<T>>> shared_out(S, std::vector<std::vector<T>>(R));
  for (int r = 0; r < R; ++r) {
    RankOutputs& ro = out.ranks[r];
    ro.num_tokens = layer.ranks[r].num_tokens;
    ro.final_out.wide = ro.expert_out.wide = is_f64(options.numerics);
    storage<T>(ro.expert_out).assign(static_cast<std::size_t>(ro.num_tokens) * K * Hs, T(0));
    storage<T>(ro.final_out).assign(static_cast<std::size_t>(ro.num_tokens) * Hs, T(0));
    for (int s = 0; s < S; ++s) shared_out[s][r].assign(static_cast<std::size_t>(ro.num_tokens) * Hs, T(0));
  }

  // Work items: routed experts that received rows (largest first, for balance), then shared ones.
  std::vector<int> items;
  for (int e = 0; e < static_cast<int>(rows.size()); ++e)
    if (!rows[e].empty()) items.push_back(e);
  std::stable_sort(items.begin(), items.end(), [&](int a, int b) { return rows[a].size() > rows[b].size(); });
  for (int s = 0; s < S; ++s) items.push_back(-1 - s);

  const ExpertOptions eo = expert_options(c, options);
  const int nb = c.scales_per_token();
  const bool fp8_tokens = is_fp8(c.token_dtype);
  struct Scratch {  // per worker, reused across experts: fresh pages are slow to fault in
    ExpertMatrices m;
    PreparedExpert prepared;
    ExpertWorkspace ew;
    std::vector<RowRef> all;
    std::vector<float> x, sc, w;
    std::vector<T> y;
  };
  std::vector<Scratch> scratch(workers_for(items.size(), options.threads));
  parallel_items(items.size(), options.threads, [&](std::size_t i, int worker) {
    Scratch& z = scratch[worker];
    const int item = items[i];
    const bool shared = item < 0;
    ExpertOptions o = eo;
    // Shared experts run locally on the undispatched tokens: no dispatch quantization.
    if (shared && o.numerics == Numerics::fp8) o.numerics = Numerics::bf16;
    if (shared)
      weights.shared(layer_pos, -1 - item, z.m);
    else
      weights.routed(layer_pos, item, z.m);
    z.prepared.assign(z.m, c.activation, o.numerics);
    z.all.clear();
    if (shared)
      for (int r = 0; r < R; ++r)
        for (std::int64_t t = 0; t < layer.ranks[r].num_tokens; ++t) z.all.push_back({r, t, 0});
    const std::vector<RowRef>& refs = shared ? z.all : rows[item];
    const bool on_input = c.router_weight_on_input && !shared;
    // Rows go through in chunks, bounding the gather buffers of hot or shared experts; a row's
    // result does not depend on its chunk.
    for (std::size_t j0 = 0; j0 < refs.size(); j0 += kGatherRows) {
      const std::size_t n = std::min(kGatherRows, refs.size() - j0);
      z.x.resize(n * Hs);
      z.sc.resize(fp8_tokens ? n * nb : 0);
      z.w.resize(on_input ? n : 0);
      for (std::size_t j = 0; j < n; ++j) {
        const RowRef& ref = refs[j0 + j];
        const RankInput& in = layer.ranks[ref.rank];
        std::copy_n(in.x.data() + ref.token * H, H, z.x.data() + j * Hs);
        if (fp8_tokens) std::copy_n(in.x_scales.data() + ref.token * nb, nb, z.sc.data() + j * nb);
        if (on_input) z.w[j] = in.topk_weights[ref.token * K + ref.slot];
      }
      TokenRows tr;
      tr.x = z.x.data();
      tr.scales = fp8_tokens ? z.sc.data() : nullptr;
      tr.input_weights = on_input ? z.w.data() : nullptr;
      tr.rows = static_cast<std::int64_t>(n);
      z.y.resize(n * Hs);
      run_expert(z.prepared, tr, o, z.y.data(), &z.ew);
      for (std::size_t j = 0; j < n; ++j) {
        const RowRef& ref = refs[j0 + j];
        T* dst = shared ? shared_out[-1 - item][ref.rank].data() + ref.token * H
                        : storage<T>(out.ranks[ref.rank].expert_out).data() + (ref.token * K + ref.slot) * H;
        std::copy_n(z.y.data() + j * Hs, H, dst);
      }
    }
  });

  const CombineSpec spec = combine_spec(c, options.numerics);
  parallel_items(static_cast<std::size_t>(R), options.threads, [&](std::size_t ri) {
    const int r = static_cast<int>(ri);
    const RankInput& in = layer.ranks[r];
    const std::vector<T>& eo_r = storage<T>(out.ranks[r].expert_out);
    std::vector<T>& fo = storage<T>(out.ranks[r].final_out);
    std::vector<const T*> slots(K), sh(S);
    std::vector<T> shared_sum(S > 0 ? Hs : 0);
    for (std::int64_t t = 0; t < in.num_tokens; ++t) {
      for (int k = 0; k < K; ++k)
        slots[k] = in.topk_ids[t * K + k] >= 0 ? eo_r.data() + (t * K + k) * H : nullptr;
      if (S > 0) {
        for (int s = 0; s < S; ++s) sh[s] = shared_out[s][r].data() + t * H;
        sum_shared(spec, H, S, sh.data(), shared_sum.data());
      }
      combine_token(spec, H, K, slots.data(), in.topk_weights.data() + t * K, S > 0 ? shared_sum.data() : nullptr,
                    fo.data() + t * H);
    }
  });
  return out;
}

}  // namespace

ExpertOptions expert_options(const TraceConfig& c, const ReferenceOptions& options) {
  ExpertOptions o;
  o.numerics = options.numerics;
  o.token_dtype = c.token_dtype;
  o.scale_block = c.scale_block;
  o.fp8_format = options.fp8_format;
  return o;
}

CombineSpec combine_spec(const TraceConfig& c, Numerics numerics) {
  CombineSpec s;
  s.numerics = numerics;
  s.routed_scaling_factor = c.routed_scaling_factor;
  s.router_weight_on_input = c.router_weight_on_input;
  return s;
}

LayerOutputs run_layer(const Trace& trace, int layer_pos, const WeightProvider& weights,
                       const ReferenceOptions& options) {
  if (layer_pos < 0 || layer_pos >= static_cast<int>(trace.layers.size()))
    throw Error(where(trace.path) + "layer " + std::to_string(layer_pos) + " out of range");
  if (is_f64(options.numerics)) return run_typed<double>(trace, layer_pos, weights, options);
  return run_typed<float>(trace, layer_pos, weights, options);
}

std::vector<LayerOutputs> run_reference(const Trace& trace, const ReferenceOptions& options) {
  const WeightProvider weights(trace);
  std::vector<LayerOutputs> out;
  for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) out.push_back(run_layer(trace, l, weights, options));
  return out;
}

}  // namespace moesim
