// What one hypothesis of the diagnose catalog predicts for a layer: the simulator's dispatch,
// expert side and combine, with the hypothesis' mutation applied between the stages it
// concerns. The dispatch a prediction reports is what the receive side saw, so structural
// comparisons see the rows as delivered even where the consumer misreads them.
#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "diagnose.hpp"
#include "diagnose_products.hpp"
#include "diagnose_rows.hpp"
#include "error.hpp"
#include "expert_side.hpp"
#include "identical_rows.hpp"

namespace moesim::sim {

namespace {

// The most common valid recv_x row over every captured rank (the first seen on a tie; rows
// equal bit for bit), with its scales; false when no recv_x was captured.
bool common_row(const Trace& tr, const Layer& layer, int threads, std::vector<float>& row, std::vector<float>& scales) {
  const int H = tr.config.hidden, S = tr.config.scales_per_token();
  std::vector<std::pair<int, std::int64_t>> where;  // (rank, row) in rank order, then row order
  for (std::size_t r = 0; r < layer.ranks.size(); ++r) {
    const Captured& cap = layer.ranks[r].captured;
    if (cap.recv_x.empty()) continue;
    const std::int64_t valid = cap.total_recv >= 0 ? cap.total_recv : cap.rows;
    for (std::int64_t i = 0; i < valid; ++i) where.push_back({static_cast<int>(r), i});
  }
  if (where.empty()) return false;
  auto x_of = [&](std::int64_t q) -> const float* {
    return &layer.ranks[where[q].first].captured.recv_x[where[q].second * H];
  };
  const auto first = first_identical(static_cast<std::int64_t>(where.size()), H * sizeof(float), x_of, threads);
  std::vector<std::int64_t> count(where.size(), 0);
  for (std::int64_t f : first) ++count[f];
  const std::int64_t best = std::max_element(count.begin(), count.end()) - count.begin();  // the first of the largest
  row.assign(x_of(best), x_of(best) + H);
  const Captured& cap = layer.ranks[where[best].first].captured;
  scales.clear();
  const std::int64_t i = where[best].second;
  if (!cap.recv_scales.empty()) scales.assign(&cap.recv_scales[i * S], &cap.recv_scales[i * S] + S);
  return true;
}

// A copy of the layer without its capture (gigabytes at the seed's scale), and without its x
// unless `with_x`.
Layer inputs_only(const Layer& layer, bool with_x) {
  Layer out{layer.index, layer.step, {}, layer.weights};
  for (const RankInput& in : layer.ranks)
    out.ranks.push_back({in.num_tokens, with_x ? in.x : std::vector<float>{}, in.x_scales, in.topk_ids, in.topk_weights, {}});
  return out;
}

// A token of layer `lp` whose x (and scales) are `row` (`scales`) bit for bit.
bool token_holding(const Trace& tr, int lp, const std::vector<float>& row, const std::vector<float>& scales, TokenRef& at) {
  const int H = tr.config.hidden;
  const std::size_t S = scales.size();
  const auto& ranks = tr.layers[lp].ranks;
  for (std::size_t r = 0; r < ranks.size(); ++r)
    for (std::int64_t t = 0; t < ranks[r].num_tokens; ++t) {
      if (std::memcmp(&ranks[r].x[t * H], row.data(), H * sizeof(float)) != 0) continue;
      if (S > 0 && (ranks[r].x_scales.size() < (t + 1) * S ||
                    std::memcmp(&ranks[r].x_scales[t * S], scales.data(), S * sizeof(float)) != 0))
        continue;
      at = {static_cast<std::int32_t>(r), t};
      return true;
    }
  return false;
}

// Duplicates and drops rows of each rank's buffer so its sources match the capture's; returns
// the number of rows duplicated and dropped, or -1 when no rank has positions to fit.
std::pair<std::int64_t, std::int64_t> fit_rows(const Layer& layer, Dispatch& d, int K, bool& any_positions) {
  const int R = static_cast<int>(d.ranks.size());
  std::int64_t dups = 0, drops = 0;
  any_positions = false;
  for (int r = 0; r < R; ++r) {
    const Captured& cap = layer.ranks[r].captured;
    if (cap.rows == 0 && cap.total_recv < 0) continue;
    const CapturedRows cr = decode_captured(layer, r, d.max_tokens, K);
    if (!cr.positions) continue;
    any_positions = true;
    RecvBuffer& b = d.ranks[r];
    using Key = std::pair<int, std::int64_t>;
    std::map<Key, std::vector<int>> cap_slots;
    for (std::int64_t i = 0; i < cr.valid; ++i)
      if (cr.src_rank[i] >= 0) cap_slots[{cr.src_rank[i], cr.token[i]}].push_back(cr.slot[i]);
    std::map<Key, std::vector<std::int64_t>> rows_of;
    for (std::int64_t j = 0; j < b.total_recv; ++j) rows_of[{b.src_rank[j], b.src_token[j]}].push_back(j);
    std::vector<char> keep(b.total_recv, 1);
    std::vector<std::int64_t> extra;  // rows to append as duplicates
    for (auto& [key, rows] : rows_of) {
      auto it = cap_slots.find(key);
      std::vector<int> want = it == cap_slots.end() ? std::vector<int>{} : it->second;
      // Keep the rows whose slot the capture shows first, then any, up to the captured count.
      std::vector<char> take(rows.size(), 0);
      std::size_t kept = 0;
      for (std::size_t q = 0; q < rows.size(); ++q) {
        auto w = std::find(want.begin(), want.end(), b.slot[rows[q]]);
        if (w != want.end() && kept < want.size()) take[q] = 1, ++kept, want.erase(w);
      }
      const std::size_t target = it == cap_slots.end() ? 0 : it->second.size();
      for (std::size_t q = 0; q < rows.size() && kept < target; ++q)
        if (!take[q]) take[q] = 1, ++kept;
      for (std::size_t q = 0; q < rows.size(); ++q)
        if (!take[q]) keep[rows[q]] = 0, ++drops;
      for (std::size_t q = rows.size(); q < target; ++q) extra.push_back(rows.front()), ++dups;
    }
    // Rebuild the buffer: kept rows in order, then the duplicates.
    std::vector<std::int64_t> order;
    for (std::int64_t j = 0; j < b.total_recv; ++j)
      if (keep[j]) order.push_back(j);
    order.insert(order.end(), extra.begin(), extra.end());
    std::vector<std::int32_t> new_of(b.total_recv, -1);
    RecvBuffer nb;
    nb.buffer_rows = b.buffer_rows;
    nb.overflow = b.overflow;
    nb.expert_begin = b.expert_begin;
    for (std::size_t n = 0; n < order.size(); ++n) {
      const std::int64_t j = order[n];
      if (n < order.size() - extra.size()) new_of[j] = static_cast<std::int32_t>(n);
      nb.src_rank.push_back(b.src_rank[j]);
      nb.src_token.push_back(b.src_token[j]);
      nb.slot.push_back(b.slot[j]);
      nb.target.push_back(b.target[j]);
      nb.src_pos.push_back(b.src_pos[j]);
      nb.ids.insert(nb.ids.end(), &b.ids[j * K], &b.ids[j * K] + K);
      nb.weights.insert(nb.weights.end(), &b.weights[j * K], &b.weights[j * K] + K);
    }
    nb.total_recv = static_cast<std::int64_t>(order.size());
    b = std::move(nb);
    for (int s = 0; s < R; ++s)
      for (std::size_t a = 0; a < d.slot_row[s].size(); ++a)
        if (d.slot_dest[s][a] == r && d.slot_row[s][a] >= 0) d.slot_row[s][a] = new_of[d.slot_row[s][a]];
  }
  return {dups, drops};
}

// The routing combine sees when handed each rank's received ids (rows t < total_recv of its own
// receive buffer; nothing past it), and the rows those ids point at: the row token t has on
// that rank, or none.
void received_ids_routing(const ExpertMap& map, int K, std::vector<SourceRouting>& sources, Dispatch& d) {
  const int R = static_cast<int>(sources.size());
  const int E = map.num_experts;
  for (int s = 0; s < R; ++s) {
    const RecvBuffer& b = d.ranks[s];
    SourceRouting& src = sources[s];
    std::vector<std::int32_t> dest(src.num_tokens * K), row(src.num_tokens * K);
    for (std::int64_t t = 0; t < src.num_tokens; ++t)
      for (int k = 0; k < K; ++k) {
        const std::int32_t id = t < b.total_recv ? b.ids[t * K + k] : -1;
        src.ids[t * K + k] = id >= 0 && id < E ? id : -1;
      }
    for (std::int64_t t = 0; t < src.num_tokens; ++t)
      for (int k = 0; k < K; ++k) {
        const std::int32_t id = src.ids[t * K + k];
        std::int32_t dr = -1, rw = -1;
        if (id >= 0) {
          dr = map.rank_of[id];
          for (int q = 0; q < K && rw < 0; ++q)
            if (d.slot_dest[s][t * K + q] == dr) rw = d.slot_row[s][t * K + q];
        }
        dest[t * K + k] = dr;
        row[t * K + k] = rw;
      }
    d.slot_dest[s] = std::move(dest);
    d.slot_row[s] = std::move(row);
  }
}

// Expert outputs of captured rows past total_recv, as a whole-buffer consumer computes them
// from the stale rows' own x, ids and weights: the simulator's expert side run on a buffer of
// those rows, each posing as an extra token of its rank so the expert side can read its x.
std::vector<double> stale_outputs(const Trace& tr, int lp, const ExpertMap& map, const SimOptions& o, int r) {
  const TraceConfig& c = tr.config;
  const int R = c.num_ranks, K = c.top_k, H = c.hidden, S = c.scales_per_token();
  const Captured& cap = tr.layers[lp].ranks[r].captured;
  const std::int64_t begin = cap.total_recv, end = std::min(cap.rows, cap.expert_rows);
  if (begin < 0 || end <= begin || cap.recv_x.empty()) return {};
  const std::int64_t n = end - begin;

  Trace alt;
  alt.config = c;
  alt.weight_spec = tr.weight_spec;
  alt.path = tr.path;
  alt.layers.push_back(inputs_only(tr.layers[lp], true));
  RankInput& in = alt.layers[0].ranks[r];
  const std::int64_t T = in.num_tokens;
  in.x.insert(in.x.end(), cap.recv_x.begin() + begin * H, cap.recv_x.begin() + end * H);
  if (is_fp8(c.token_dtype)) {
    if (cap.recv_scales.empty()) in.x_scales.resize((T + n) * S, 1.0f);
    else in.x_scales.insert(in.x_scales.end(), cap.recv_scales.begin() + begin * S, cap.recv_scales.begin() + end * S);
  }
  in.num_tokens = T + n;
  in.topk_ids.resize((T + n) * K, -1);
  in.topk_weights.resize((T + n) * K, 0.0f);

  Dispatch d;
  d.options = o.dispatch;
  d.top_k = K;
  d.ranks.resize(R);
  d.slot_dest.resize(R);
  d.slot_row.resize(R);
  d.slot_first.resize(R);
  for (int s = 0; s < R; ++s) {
    const std::size_t slots = static_cast<std::size_t>(alt.layers[0].ranks[s].num_tokens) * K;
    d.slot_dest[s].assign(slots, -1);
    d.slot_row[s].assign(slots, -1);
    d.slot_first[s].assign(slots, 0);
  }
  RecvBuffer& b = d.ranks[r];
  b.total_recv = b.buffer_rows = n;
  for (std::int64_t i = 0; i < n; ++i) {
    b.src_rank.push_back(r);
    b.src_token.push_back(static_cast<std::int32_t>(T + i));
    b.slot.push_back(0);
    b.target.push_back(-1);
    b.src_pos.push_back(-1);
  }
  b.ids.assign(n * K, 0);  // a zeroed buffer where nothing was captured
  b.weights.assign(n * K, 0.0f);
  if (!cap.recv_topk_ids.empty()) std::copy(cap.recv_topk_ids.begin() + begin * K, cap.recv_topk_ids.begin() + end * K, b.ids.begin());
  if (!cap.recv_weights.empty()) std::copy(cap.recv_weights.begin() + begin * K, cap.recv_weights.begin() + end * K, b.weights.begin());
  for (auto& id : b.ids) id = id >= -1 && id < c.num_experts ? id : -1;  // stale garbage names no expert

  const WeightProvider wp(alt);
  std::vector<RankRun> out(R);
  run_expert_side(alt, 0, wp, map, d, o, out);
  std::vector<double> v(n * H);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = out[r].expert_rows[i];
  return v;
}

}  // namespace

Prediction predict(const Trace& trace, int lp, const Hypothesis& h, const WeightProvider& weights, const ExpertMap& map,
                   bool outputs, Prediction reuse) {
  const TraceConfig& c = trace.config;
  const int R = c.num_ranks, K = c.top_k, H = c.hidden;
  const Layer& layer = trace.layers.at(lp);
  SimOptions o = h.options;
  // Every field set again below; the vectors keep their storage.
  Prediction p = std::move(reuse);
  p.tested = true;
  p.copy.reset();
  p.note.clear();
  p.stale_read = false;
  for (RankRun& run : p.ranks)
    for (auto* v : {&run.expert_rows, &run.expert_out, &run.combine_out, &run.final_out})
      v->f32.clear(), v->f64.clear();
  for (RankRun& run : p.ranks) run.combine_weights.clear();
  for (auto& v : p.stale) v.clear();

  // A warm-up batch: a one-layer copy of the trace whose every token is the captured common row.
  std::shared_ptr<Trace> alt;
  std::optional<WeightProvider> alt_weights;
  std::unique_ptr<ExpertBackend> alt_cpu;
  std::optional<IdenticalRows> same_row;
  const Trace* tr = &trace;
  const WeightProvider* wp = &weights;
  int pos = lp;
  if (h.mutation == Mutation::warmup_x) {
    std::vector<float> row, scales;
    if (!common_row(trace, layer, o.threads, row, scales)) {
      p.tested = false;
      p.note = "no recv_x captured";
      return p;
    }
    alt = std::make_shared<Trace>();
    alt->config = c;
    alt->weight_spec = trace.weight_spec;
    alt->x_spec = trace.x_spec;
    alt->path = trace.path;
    alt->layers.push_back(inputs_only(layer, false));
    for (RankInput& in : alt->layers[0].ranks) {
      in.x.resize(static_cast<std::size_t>(in.num_tokens) * H);
      for (std::int64_t t = 0; t < in.num_tokens; ++t) {
        std::copy(row.begin(), row.end(), &in.x[t * H]);
        if (!scales.empty() && !in.x_scales.empty()) std::copy(scales.begin(), scales.end(), &in.x_scales[t * scales.size()]);
      }
    }
    alt_weights.emplace(*alt);
    tr = alt.get();
    wp = &*alt_weights;
    pos = 0;
    p.copy = alt;
    // A backend reads the rows of the trace it was made for, not this copy's: the run's own where
    // one of its tokens holds the common row, else the CPU's on the copy; either computes one row.
    TokenRef as;
    if (o.backend && token_holding(trace, lp, row, scales, as)) {
      same_row.emplace(*o.backend, H, lp, as);
    } else {
      alt_cpu = make_cpu_backend(*alt, *alt_weights);
      same_row.emplace(*alt_cpu, H);
    }
    o.backend = &*same_row;
  }

  // Only MORI's InterNode kernels read combine's indices (they key the node predicate by the
  // rank's own token id); the intranode kernels ignore them, so there the wrong tensor is
  // harmless (mori issue 475, fixed by mori pull request 546).
  if (h.mutation == Mutation::combine_recv_ids &&
      (o.dispatch.model != DispatchModel::mori || c.mori.kernel_type.rfind("InterNode", 0) != 0)) {
    p.tested = false;
    p.note = "only MORI's InterNode kernels read combine's indices (kernel " + c.mori.kernel_type + ")";
    return p;
  }

  if (h.mutation == Mutation::capacity && o.dispatch.max_total_recv <= 0) {
    std::int64_t cap = -1;
    for (const RankInput& in : layer.ranks)
      if (in.captured.buffer_rows >= 0) cap = cap < 0 ? in.captured.buffer_rows : std::min(cap, in.captured.buffer_rows);
    if (cap <= 0) {
      p.tested = false;
      p.note = "no receive capacity in the trace or the capture";
      return p;
    }
    o.dispatch.max_total_recv = cap;
  }

  // A whole-buffer consumer differs from its plain form only in rows past total_recv.
  if (reads_stale_rows(o.consumer, o.dispatch.model)) {
    bool stale = false;
    for (const RankInput& in : layer.ranks)
      stale = stale || (in.captured.total_recv >= 0 && in.captured.expert_rows > in.captured.total_recv &&
                        in.captured.rows > in.captured.total_recv);
    if (!stale) {
      p.tested = false;
      p.note = "no expert outputs of rows past total_recv captured";
      return p;
    }
  }

  std::vector<SourceRouting> sources = layer_sources(*tr, pos, map, o);
  p.dispatch = dispatch(map, K, sources, o.dispatch);
  if (h.mutation == Mutation::capacity) {
    std::int64_t dropped = 0;
    for (const auto& b : p.dispatch.ranks) dropped += b.overflow;
    if (dropped == 0) {
      p.tested = false;
      p.note = "no rank overflows " + std::to_string(o.dispatch.max_total_recv) + " rows";
      return p;
    }
    p.note = std::to_string(dropped) + " rows past a capacity of " + std::to_string(o.dispatch.max_total_recv) + " dropped";
  }
  if (h.mutation == Mutation::fit_rows) {
    bool any = false;
    const auto [dups, drops] = fit_rows(layer, p.dispatch, K, any);
    if (!any || dups + drops == 0) {
      p.tested = false;
      p.note = any ? "the capture shows no duplicated or missing rows" : "no src_token_pos captured to fit rows to";
      return p;
    }
    p.note = "fitted: " + std::to_string(dups) + " rows duplicated, " + std::to_string(drops) + " dropped";
  }

  // The expert side sees the dispatch as delivered, unless the consumer ignores the weights.
  p.ranks.resize(R);
  p.x.resize(R);
  for (int r = 0; r < R; ++r) p.x[r] = &tr->layers[pos].ranks[r].x;
  p.stale.resize(R);
  p.stale_read = o.consumer.whole_buffer;
  if (!outputs) return p;  // buffers only: the expert math would be compared with nothing
  if (h.mutation == Mutation::weights_one) {
    Dispatch ones = p.dispatch;
    for (auto& b : ones.ranks) std::fill(b.weights.begin(), b.weights.end(), 1.0f);
    run_expert_side(*tr, pos, *wp, map, ones, o, p.ranks);
  } else {
    run_expert_side(*tr, pos, *wp, map, p.dispatch, o, p.ranks);
  }
  if (h.mutation == Mutation::combine_recv_ids) {
    Dispatch d2 = p.dispatch;
    std::vector<SourceRouting> s2 = sources;
    received_ids_routing(map, K, s2, d2);
    run_combine(*tr, pos, *wp, map, s2, d2, o, p.ranks);
  } else {
    run_combine(*tr, pos, *wp, map, sources, p.dispatch, o, p.ranks);
  }

  SimOptions whole = o;
  whole.consumer.whole_buffer = true;
  whole.backend = nullptr;  // the stale rows pose as extra tokens of a copy of the trace
  if (reads_stale_rows(whole.consumer, o.dispatch.model))
    for (int r = 0; r < R; ++r)
      p.stale[r] = stale_outputs(trace, lp, map, whole, r);
  return p;
}

}  // namespace moesim::sim
