#include "reference.hpp"

#include <algorithm>
#include <string>

#include "error.hpp"
#include "expert_rows.hpp"
#include "parallel.hpp"
#include "shared_gate.hpp"
#include "trace_io.hpp"

namespace moesim {
namespace {

constexpr std::size_t kTaskRows = 4096;  // rows per backend call: bounds host buffers of hot experts

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
  check_layer(trace, layer_pos);

  const std::vector<std::vector<RowRef>> rows = expert_rows(c, layer);

  LayerOutputs out;
  out.layer_index = layer.index;
  out.ranks.resize(R);
  std::vector<std::vector<std::vector<T>>> shared_out(S, std::vector<std::vector<T>>(R));
  // In parallel: at production size these are gigabytes, and first touch faults the pages in.
  parallel_items(static_cast<std::size_t>(R), options.threads, [&](std::size_t ri) {
    const int r = static_cast<int>(ri);
    RankOutputs& ro = out.ranks[r];
    ro.num_tokens = layer.ranks[r].num_tokens;
    ro.final_out.wide = ro.expert_out.wide = is_f64(options.numerics);
    storage<T>(ro.expert_out).assign(static_cast<std::size_t>(ro.num_tokens) * K * Hs, T(0));
    storage<T>(ro.final_out).assign(static_cast<std::size_t>(ro.num_tokens) * Hs, T(0));
    for (int s = 0; s < S; ++s) shared_out[s][r].assign(static_cast<std::size_t>(ro.num_tokens) * Hs, T(0));
  });

  // Work items: routed experts that received rows (largest first, for balance), then shared ones.
  std::vector<int> items;
  for (int e = 0; e < static_cast<int>(rows.size()); ++e)
    if (!rows[e].empty()) items.push_back(e);
  std::stable_sort(items.begin(), items.end(), [&](int a, int b) { return rows[a].size() > rows[b].size(); });
  for (int s = 0; s < S; ++s) items.push_back(-1 - s);

  const ExpertOptions eo = expert_options(c, options);
  std::unique_ptr<ExpertBackend> cpu;
  ExpertBackend* backend = options.backend;
  if (!backend) backend = (cpu = make_cpu_backend(trace, weights)).get();
  struct Scratch {  // per worker, reused across experts: fresh pages are slow to fault in
    std::vector<TokenRef> rows;
    std::vector<float> w;
    std::vector<void*> dest;
  };
  const int workers = backend->workers(options.threads);
  std::vector<Scratch> scratch(workers_for(items.size(), workers));
  parallel_items(items.size(), workers, [&](std::size_t i, int worker) {
    Scratch& z = scratch[worker];
    const int item = items[i];
    const bool shared = item < 0;
    ExpertTask task;
    task.layer_pos = layer_pos;
    task.expert = shared ? -1 - item : item;
    task.shared = shared;
    task.options = eo;
    // Shared experts run locally on the undispatched tokens: no dispatch quantization.
    if (shared && eo.numerics == Numerics::fp8) task.options.numerics = Numerics::bf16;
    const bool on_input = c.router_weight_on_input && !shared;
    const std::size_t n = shared ? 0 : rows[item].size();
    z.rows.clear();
    z.w.clear();
    if (shared) {
      for (int r = 0; r < R; ++r)
        for (std::int64_t t = 0; t < layer.ranks[r].num_tokens; ++t) z.rows.push_back({r, t});
    } else {
      for (std::size_t j = 0; j < n; ++j) {
        const RowRef& ref = rows[item][j];
        z.rows.push_back({ref.rank, ref.token});
        if (on_input) z.w.push_back(layer.ranks[ref.rank].topk_weights[ref.token * K + ref.slot]);
      }
    }
    // Rows go through in chunks, bounding the host buffers of hot or shared experts; a row's
    // result does not depend on its chunk.
    for (std::size_t j0 = 0; j0 < z.rows.size(); j0 += kTaskRows) {
      const std::size_t m = std::min(kTaskRows, z.rows.size() - j0);
      task.rows = z.rows.data() + j0;
      task.num_rows = static_cast<std::int64_t>(m);
      task.input_weights = on_input ? z.w.data() + j0 : nullptr;
      z.dest.resize(m);
      for (std::size_t j = 0; j < m; ++j) {
        const TokenRef& ref = z.rows[j0 + j];
        z.dest[j] = shared ? shared_out[-1 - item][ref.rank].data() + ref.token * H
                           : storage<T>(out.ranks[ref.rank].expert_out).data() +
                                 (ref.token * K + rows[item][j0 + j].slot) * H;
      }
      task.out_rows = z.dest.data();
      backend->run(task, static_cast<T*>(nullptr), worker);
    }
  });

  const CombineSpec spec = combine_spec(c, options.numerics);
  const SharedGate gate(trace, layer_pos, weights, eo);
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
        gate.apply(r, t, shared_sum.data());
      }
      combine_token(spec, H, K, slots.data(), in.topk_weights.data() + t * K, S > 0 ? shared_sum.data() : nullptr,
                    fo.data() + t * H, in.topk_ids.data() + t * K);
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
  // Weights that already hold the factor (DeepSeek-V3's router) must not get it twice.
  s.routed_scaling_factor = c.topk_weights_include_scaling ? 1.0 : c.routed_scaling_factor;
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
