// The combine models (pairing.hpp) and the final output. Every sum is in the accumulation type
// (float64 in exact mode, float32 otherwise), in ascending top-k slot order (rank-sum: in the
// library's RankOrder), rounded once to the
// output dtype (bf16 in bf16/fp8 modes) as reference/NUMERICS.md rounds the reference's own
// weighted sum; the weighted model calls the reference's combine primitive itself. The final
// output then applies the routed scaling factor and shared experts with that same primitive,
// so a pairing that hands the combine the reference's per-slot outputs reproduces its bits.
#include <algorithm>

#include "error.hpp"
#include "expert_side.hpp"
#include "parallel.hpp"
#include "shared_gate.hpp"

namespace moesim::sim {

namespace {

template <class T>
std::vector<T>& vec(Values& v) {
  if constexpr (std::is_same_v<T, double>) return v.f64;
  else return v.f32;
}

template <class T>
T round_out(Numerics n, T v) {
  if constexpr (std::is_same_v<T, float>) {
    if (output_dtype(n) == DType::bf16) return round_bf16(v);
  }
  return v;
}

// The rank a slot's id sends its row to; rank0: MORI's old -1 / E_local == 0.
int dest_rank(const ExpertMap& map, bool rank0, std::int32_t id) { return id >= 0 ? map.rank_of[id] : (rank0 ? 0 : -1); }

// One entry per destination rank a token's slots reach: the slot whose row carries it (its
// first) and its last, in the order rank-sum adds them.
struct RankEntry {
  int dest, first, last;
};
void rank_entries(const std::int32_t* ids, int K, const ExpertMap& map, bool rank0, RankOrder order,
                  std::vector<RankEntry>& dests) {
  dests.clear();
  for (int k = 0; k < K; ++k) {
    const int dest = dest_rank(map, rank0, ids[k]);
    if (dest < 0) continue;
    auto it = std::find_if(dests.begin(), dests.end(), [&](const RankEntry& e) { return e.dest == dest; });
    if (it == dests.end()) dests.push_back({dest, k, k});
    else it->last = k;
  }
  if (order == RankOrder::ascending_rank)
    std::sort(dests.begin(), dests.end(), [](const RankEntry& a, const RankEntry& b) { return a.dest < b.dest; });
  else if (order == RankOrder::last_slot)
    std::sort(dests.begin(), dests.end(), [](const RankEntry& a, const RankEntry& b) { return a.last < b.last; });
}

// MORI accumulates the returned weight rows in float32 like the hidden rows (WarpAccum):
// repeated additions, which differ from w * n for some w once n >= 6.
void add_returned_weights(const Dispatch& d, int s, std::int64_t t, int K, const std::vector<RankEntry>& dests, float* w) {
  for (const RankEntry& e : dests) {
    const std::int64_t row = d.slot_row[s][t * K + e.first];
    if (row < 0) continue;
    const float* back = &d.ranks[e.dest].weights[row * K];
    for (int k = 0; k < K; ++k) w[k] = w[k] + back[k];
  }
}

// Source rank s's summed (and gated) shared-expert outputs [T_s, H], run on its own tokens;
// empty without shared experts.
template <class T>
std::vector<T> shared_outputs(const Trace& tr, int lp, int s, std::int64_t T_s, const ExpertOptions& eo,
                              const CombineSpec& full, const SharedGate& gate, ExpertBackend& backend) {
  const TraceConfig& c = tr.config;
  const int H = c.hidden;
  std::vector<T> shared;
  if (c.num_shared_experts == 0 || T_s == 0) return shared;
  std::vector<TokenRef> rows(T_s);
  for (std::int64_t t = 0; t < T_s; ++t) rows[t] = {s, t};
  std::vector<std::vector<T>> outs(c.num_shared_experts, std::vector<T>(T_s * H));
  for (int j = 0; j < c.num_shared_experts; ++j) {
    ExpertTask task;
    task.layer_pos = lp;
    task.expert = j;
    task.shared = true;
    task.options = eo;
    // As in the reference: shared experts run on the undispatched token, no fp8 dispatch.
    if (eo.numerics == Numerics::fp8) task.options.numerics = Numerics::bf16;
    task.rows = rows.data();
    task.num_rows = T_s;
    backend.run(task, outs[j].data(), 0);
  }
  shared.resize(T_s * H);
  std::vector<const T*> ptrs(c.num_shared_experts);
  for (std::int64_t t = 0; t < T_s; ++t) {
    for (int j = 0; j < c.num_shared_experts; ++j) ptrs[j] = &outs[j][t * H];
    sum_shared(full, H, c.num_shared_experts, ptrs.data(), &shared[t * H]);
    gate.apply(s, t, &shared[t * H]);
  }
  return shared;
}

template <class T>
void combine(const Trace& tr, int lp, const WeightProvider& wp, const ExpertMap& map,
             const std::vector<SourceRouting>& sources, const Dispatch& d, const SimOptions& o,
             std::vector<RankRun>& out) {
  const TraceConfig& c = tr.config;
  const int R = c.num_ranks, K = c.top_k, H = c.hidden;
  const int per_node = std::max(1, c.mori.gpus_per_node);
  const bool rank0 = o.dispatch.model == DispatchModel::mori && o.dispatch.negative == NegativeIds::rank0;
  CombineSpec partial = combine_spec(c, o.numerics);
  partial.routed_scaling_factor = 1.0;
  const CombineSpec full = combine_spec(c, o.numerics);
  ReferenceOptions ro;
  ro.numerics = o.numerics;
  ro.fp8_format = o.fp8_format;
  const ExpertOptions eo = expert_options(c, ro);
  const SharedGate gate(tr, lp, wp, eo);
  std::unique_ptr<ExpertBackend> cpu;
  ExpertBackend* backend = o.backend;
  if (!backend) backend = (cpu = make_cpu_backend(tr, wp)).get();

  const RankOrder order = rank_order(o.dispatch.model, o.deepep_version);
  const bool mori_weights = o.dispatch.model == DispatchModel::mori && o.combine == CombineModel::rank_sum;
  const bool quantized = o.combine_quant.type != CombineQuant::none;

  // Shared experts first, source after source on the backend (its calls are not concurrent);
  // then every source's combine on the run's threads, each writing only its own outputs.
  std::vector<std::vector<T>> shared_of(R);
  for (int s = 0; s < R; ++s) shared_of[s] = shared_outputs<T>(tr, lp, s, sources[s].num_tokens, eo, full, gate, *backend);

  parallel_items(static_cast<std::size_t>(R), o.threads, [&](std::size_t source) {
    const int s = static_cast<int>(source);
    std::vector<const T*> slot_out(K);
    std::vector<T> acc(H), node_acc(H);
    std::vector<int> seen;
    std::vector<RankEntry> dests;
    std::vector<float> q(quantized ? H : 0), qs(quantized ? H : 0);
    const SourceRouting& src = sources[s];
    const std::int64_t T_s = src.num_tokens;
    RankRun& run = out[s];
    run.combine_out.wide = run.final_out.wide = is_f64(o.numerics);
    auto& cout = vec<T>(run.combine_out);
    auto& fout = vec<T>(run.final_out);
    cout.assign(T_s * H, T(0));
    fout.assign(T_s * H, T(0));
    run.combine_weights.assign(mori_weights ? T_s * K : 0, 0.0f);
    // The row of slot k (rank-dedup layouts point every slot of a rank at its one row).
    auto row_of = [&](std::int64_t t, int k) -> const T* {
      const int dest = d.slot_dest[s][t * K + k];
      const std::int64_t row = d.slot_row[s][t * K + k];
      if (dest < 0 || row < 0) return nullptr;
      return &vec<T>(out[dest].expert_rows)[row * H];
    };
    auto dest_of = [&](int id) { return dest_rank(map, rank0, id); };
    for (std::int64_t t = 0; t < T_s; ++t) {
      const std::int32_t* ids = &src.ids[t * K];
      T* y = &cout[t * H];
      switch (o.combine) {
        case CombineModel::weighted:
          for (int k = 0; k < K; ++k) slot_out[k] = ids[k] >= 0 ? row_of(t, k) : nullptr;
          combine_token(partial, H, K, slot_out.data(), &src.weights[t * K], nullptr, y, ids);
          break;
        case CombineModel::pair_sum: {
          std::fill(acc.begin(), acc.end(), T(0));
          for (int k = 0; k < K; ++k)
            if (dest_of(ids[k]) >= 0)
              if (const T* row = row_of(t, k))
                for (int h = 0; h < H; ++h) acc[h] = acc[h] + row[h];
          for (int h = 0; h < H; ++h) y[h] = round_out(o.numerics, acc[h]);
          break;
        }
        case CombineModel::rank_sum: {
          rank_entries(ids, K, map, rank0, order, dests);
          std::fill(acc.begin(), acc.end(), T(0));
          for (const RankEntry& e : dests)
            if (const T* row = row_of(t, e.first)) {
              if constexpr (std::is_same_v<T, float>) {
                if (quantized) {
                  quantize_combine_row(o.combine_quant, row, H, q.data(), qs.data());
                  accumulate_quantized(q.data(), qs.data(), H, acc.data());
                  continue;
                }
              }
              for (int h = 0; h < H; ++h) acc[h] = acc[h] + row[h];
            }
          for (int h = 0; h < H; ++h) y[h] = round_out(o.numerics, acc[h]);
          if (mori_weights) add_returned_weights(d, s, t, K, dests, &run.combine_weights[t * K]);
          break;
        }
        case CombineModel::internode_v1: {
          std::fill(acc.begin(), acc.end(), T(0));
          const int nodes = (R + per_node - 1) / per_node;
          for (int n = 0; n < nodes; ++n) {
            std::fill(node_acc.begin(), node_acc.end(), T(0));
            seen.clear();
            bool any = false;
            for (int k = 0; k < K; ++k) {
              const int dest = dest_of(ids[k]);
              if (dest < 0 || dest / per_node != n) continue;
              if (std::find(seen.begin(), seen.end(), dest) != seen.end()) continue;
              seen.push_back(dest);
              if (const T* row = row_of(t, k)) {
                any = true;
                for (int h = 0; h < H; ++h) node_acc[h] = node_acc[h] + row[h];
              }
            }
            if (any)
              for (int h = 0; h < H; ++h) acc[h] = acc[h] + round_out(o.numerics, node_acc[h]);
          }
          for (int h = 0; h < H; ++h) y[h] = round_out(o.numerics, acc[h]);
          break;
        }
      }
    }

    const std::vector<T>& shared = shared_of[s];
    const float one = 1.0f;
    for (std::int64_t t = 0; t < T_s; ++t) {
      const T* y = &cout[t * H];
      combine_token(full, H, 1, &y, &one, shared.empty() ? nullptr : &shared[t * H], &fout[t * H]);
    }
  });
}

}  // namespace

std::vector<float> mori_combine_weights(const ExpertMap& map, const SourceRouting& source, int s, const Dispatch& d,
                                        bool rank0) {
  const int K = d.top_k;
  std::vector<float> w(static_cast<std::size_t>(source.num_tokens) * K, 0.0f);
  std::vector<RankEntry> dests;
  for (std::int64_t t = 0; t < source.num_tokens; ++t) {
    rank_entries(&source.ids[t * K], K, map, rank0, rank_order(DispatchModel::mori, DeepepVersion::v1), dests);
    add_returned_weights(d, s, t, K, dests, &w[t * K]);
  }
  return w;
}

void check_combine_quant(const SimOptions& options, int hidden) {
  const CombineQuantOptions& q = options.combine_quant;
  if (q.type == CombineQuant::none) return;
  // MORI quantizes the bf16 rows its IntraNode combine sends; nothing else has this step.
  const std::string what = "combine quantization " + std::string(name(q.type));
  if (options.dispatch.model != DispatchModel::mori || options.combine != CombineModel::rank_sum)
    throw Error(what + " is MORI's IntraNode combine: it needs dispatch mori and combine rank-sum");
  if (options.numerics != Numerics::bf16 && options.numerics != Numerics::fp8)
    throw Error(what + " quantizes bf16 rows: it needs numerics bf16 or fp8");
  if (!is_fp8(q.fp8)) throw Error(what + ": the format must be float8_e4m3fn or float8_e4m3fnuz");
  if (q.type == CombineQuant::fp8_blockwise && (q.scale_dim < 1 || q.scale_dim > hidden))
    throw Error(what + ": scale_dim " + std::to_string(q.scale_dim) + " must be in [1, hidden = " +
                std::to_string(hidden) + "]");
}

void run_combine(const Trace& trace, int layer_pos, const WeightProvider& weights, const ExpertMap& map,
                 const std::vector<SourceRouting>& sources, const Dispatch& dispatch, const SimOptions& options,
                 std::vector<RankRun>& out) {
  check_combine_quant(options, trace.config.hidden);
  if (is_f64(options.numerics))
    combine<double>(trace, layer_pos, weights, map, sources, dispatch, options, out);
  else
    combine<float>(trace, layer_pos, weights, map, sources, dispatch, options, out);
}

}  // namespace moesim::sim
