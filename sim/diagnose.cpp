// moesim diagnose: structural findings on the captured buffers, then every catalog hypothesis
// predicted and scored against the capture, observation by observation.
#include "diagnose.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "agreement.hpp"
#include "diagnose_products.hpp"
#include "diagnose_rows.hpp"
#include "error.hpp"
#include "identical_rows.hpp"
#include "pairing.hpp"
#include "parallel.hpp"
#include "stats.hpp"
#include "trace_io.hpp"

namespace moesim::sim {

namespace {

constexpr const char* kObsNames[kNumObs] = {"row counts", "row sources", "ids and weights", "recv_x",
                                            "expert rows", "stale rows", "combine_out", "final_out"};

double tolerance_for(Numerics n) {
  switch (n) {
    case Numerics::exact: return 1e-9;
    case Numerics::fp32: return 1e-5;
    default: return 1e-2;  // bf16 partials summed in another order differ by a few bf16 ulps
  }
}

std::string fmt_g(double v) {
  std::ostringstream s;
  s.precision(3);
  s << v;
  return s.str();
}

// Adds one row of H captured values against predicted ones (nullptr: zeros) into t, against
// the row's H rounding bounds `lim` or one bound `lim_all` for all of them (`lim_all` < 0 and no
// `lim`: none); returns the row's largest |captured - predicted|.
template <class P>
double add_row(Tally& t, const float* cap, const P* pred, int H, const double* lim, double lim_all) {
  double row_max = 0, wr = t.worst_ratio, dd = t.dd, cc = t.cc, xy = t.xy, xx_yy = t.xx_yy;
  for (int h = 0; h < H; ++h) {
    const double a = cap[h], b = pred ? static_cast<double>(pred[h]) : 0.0;
    if (lim) wr = std::max(wr, bound::ratio(a, b, lim[h]));
    else if (lim_all >= 0) wr = std::max(wr, bound::ratio(a, b, lim_all));
    const double d = a - b;
    dd += d * d;
    cc += a * a;
    xy += (a + 1) * (b + 1);
    xx_yy += (a + 1) * (a + 1) + (b + 1) * (b + 1);
    row_max = std::max(row_max, std::abs(d));
  }
  t.worst_ratio = wr, t.dd = dd, t.cc = cc, t.xy = xy, t.xx_yy = xx_yy;
  t.total += 1;
  return row_max;
}

// The worst row so far names the observation's first line.
template <class Label>
void note_worst(Tally& t, double row_max, double& worst, const std::string& at, Label label) {
  if (row_max > worst) {
    worst = row_max;
    t.first = at + " " + label() + ": max |captured - predicted| " + fmt_g(row_max);
  }
}

// fn(p) with p the typed data of v (float64 in exact mode).
template <class Fn>
void with_values(const Values& v, Fn fn) {
  if (v.wide) fn(v.f64.data());
  else fn(v.f32.data());
}

void score_rank(const TraceConfig& c, const Layer& layer, int r, const Prediction& p, double tol,
                const bound::Budget& budget, bool whole_buffer, Evaluation& e, std::vector<double>& worst) {
  const Captured& cap = layer.ranks[r].captured;
  const int K = c.top_k, H = c.hidden;
  const RecvBuffer& b = p.dispatch.ranks[r];
  const RankRun& run = p.ranks[r];
  const std::string at = "layer " + std::to_string(layer.index) + " rank " + std::to_string(r);
  const CapturedRows cr = decode_captured(layer, r, p.dispatch.max_tokens, K);

  // A whole buffer held without total_recv: its row count is the capacity, not what was sent.
  if ((cap.total_recv >= 0 || cap.rows > 0) && !whole_buffer) {
    Tally& t = e.obs[obs_counts];
    t.present = true;
    t.total += 1;
    if (cr.valid != b.total_recv) {
      if (t.bad == 0) t.first = at + ": " + std::to_string(cr.valid) + " rows captured, " + std::to_string(b.total_recv) + " predicted";
      t.bad += 1;
    }
  }

  // Captured rows matched to predicted rows by source, preferring the same slot, then the same ids.
  std::vector<std::pair<std::int64_t, std::int64_t>> matched;
  if (cr.positions) {
    std::map<std::pair<int, std::int64_t>, std::vector<std::int64_t>> left;
    for (std::int64_t j = 0; j < b.total_recv; ++j) left[{b.src_rank[j], b.src_token[j]}].push_back(j);
    std::int64_t extra = 0, missing = 0;
    std::string first;
    const bool have_ids = !cap.recv_topk_ids.empty();
    for (std::int64_t i = 0; i < cr.valid; ++i) {
      auto it = cr.src_rank[i] < 0 ? left.end() : left.find({cr.src_rank[i], cr.token[i]});
      if (it == left.end() || it->second.empty()) {
        if (extra++ == 0)
          first = at + " row " + std::to_string(i) + ": source (rank " + std::to_string(cr.src_rank[i]) + ", token " +
                  std::to_string(cr.token[i]) + ") not predicted (or predicted fewer times)";
        continue;
      }
      auto& cand = it->second;
      std::size_t pick = cand.size();
      for (std::size_t q = 0; q < cand.size() && pick == cand.size(); ++q)
        if (cr.slot[i] >= 0 && b.slot[cand[q]] == cr.slot[i]) pick = q;
      for (std::size_t q = 0; q < cand.size() && pick == cand.size(); ++q)
        if (have_ids && std::memcmp(&b.ids[cand[q] * K], &cap.recv_topk_ids[i * K], K * sizeof(std::int32_t)) == 0) pick = q;
      if (pick == cand.size()) pick = 0;
      matched.push_back({i, cand[pick]});
      cand.erase(cand.begin() + static_cast<std::ptrdiff_t>(pick));
    }
    for (const auto& [key, rest] : left) {
      if (!rest.empty() && missing == 0 && extra == 0)
        first = at + ": no captured row for predicted source (rank " + std::to_string(key.first) + ", token " +
                std::to_string(key.second) + ")";
      missing += static_cast<std::int64_t>(rest.size());
    }
    Tally& t = e.obs[obs_sources];
    t.present = true;
    t.total += static_cast<double>(std::max(cr.valid, b.total_recv));
    if (extra + missing > 0 && t.bad == 0) t.first = first;
    t.bad += static_cast<double>(extra + missing);

    if (have_ids || !cap.recv_weights.empty()) {
      Tally& ti = e.obs[obs_ids];
      ti.present = true;
      for (auto [i, j] : matched) {
        ti.total += 1;
        const bool ids_ok = !have_ids || std::memcmp(&b.ids[j * K], &cap.recv_topk_ids[i * K], K * sizeof(std::int32_t)) == 0;
        const bool w_ok = cap.recv_weights.empty() ||
                          std::memcmp(&b.weights[j * K], &cap.recv_weights[i * K], K * sizeof(float)) == 0;
        if (ids_ok && w_ok) continue;
        if (ti.bad == 0) {
          std::string got, want;
          for (int k = 0; k < K; ++k) {
            got += (k ? "," : "") + std::to_string(have_ids ? cap.recv_topk_ids[i * K + k] : 0);
            want += (k ? "," : "") + std::to_string(b.ids[j * K + k]);
          }
          ti.first = at + " row " + std::to_string(i) + ": " +
                     (!ids_ok ? "ids [" + got + "], predicted [" + want + "]" : std::string("weights differ"));
        }
        ti.bad += 1;
      }
    }
    if (!cap.recv_x.empty()) {
      Tally& tx = e.obs[obs_x];
      tx.present = true;
      for (auto [i, j] : matched) {
        tx.total += 1;
        const auto& src = *p.x[b.src_rank[j]];
        if (std::memcmp(&cap.recv_x[i * H], &src[static_cast<std::size_t>(b.src_token[j]) * H], H * sizeof(float)) == 0) continue;
        if (tx.bad == 0)
          tx.first = at + " row " + std::to_string(i) + ": recv_x differs from the predicted source (rank " +
                     std::to_string(b.src_rank[j]) + ", token " + std::to_string(b.src_token[j]) + ")";
        tx.bad += 1;
      }
    }
    if (cap.expert_rows > 0) {
      Tally& t = e.obs[obs_expert];
      t.present = t.bounded = true;
      with_values(run.expert_rows, [&](const auto* pred) {
        for (const auto& pair : matched) {
          const std::int64_t i = pair.first, j = pair.second;  // named: the lambda below captures i
          if (i >= cap.expert_rows) continue;
          const auto* row = pred + j * H;
          double m = 0;  // a received row's bound: from its largest |value|
          for (int h = 0; h < H; ++h) m = std::max(m, std::fabs(static_cast<double>(row[h])));
          const double row_max = add_row(t, &cap.expert_out[i * H], row, H, nullptr, budget.received_row() * m);
          note_worst(t, row_max, worst[obs_expert], at, [&] { return "row " + std::to_string(i); });
        }
      });
    }
  }

  if (cap.total_recv >= 0 && cap.expert_rows > cap.total_recv) {
    const std::int64_t n = cap.expert_rows - cap.total_recv;
    const auto& st = p.stale[r];
    auto stale_row = [&](Tally& t, std::int64_t i, double& w) {
      const double* pred = static_cast<std::size_t>((i + 1) * H) <= st.size() ? &st[i * H] : nullptr;
      const double row_max = add_row(t, &cap.expert_out[(cap.total_recv + i) * H], pred, H, nullptr, -1);
      note_worst(t, row_max, w, at, [&] { return "row " + std::to_string(cap.total_recv + i); });
    };
    if (p.stale_read) {
      e.obs[obs_stale].present = true;
      for (std::int64_t i = 0; i < n; ++i) stale_row(e.obs[obs_stale], i, worst[obs_stale]);
    } else {
      // Rows the consumer does not read stay uninitialized: anything but what reading them computes.
      Tally probe;
      probe.present = true;
      double w = -1;
      for (std::int64_t i = 0; i < n; ++i) stale_row(probe, i, w);
      Tally& t = e.obs[obs_stale];
      t.present = true;
      t.total += static_cast<double>(n);
      t.cc += 1;
      if (!st.empty() && probe.cc > 0 && probe.error(true) <= tol) {
        t.dd += 1;
        if (t.first.empty())
          t.first = at + ": rows " + std::to_string(cap.total_recv) + " to " + std::to_string(cap.expert_rows - 1) +
                    " past total_recv hold what computing them gives, though this consumer does not read them";
      }
    }
  }
  const std::int64_t T = layer.ranks[r].num_tokens;
  // Token outputs: the bound from the hypothesis's own slot outputs, as run and diff take the reference's.
  const bool slots = run.expert_out.size() == static_cast<std::size_t>(T) * K * H;
  const bool comb = !cap.combine_out.empty(), fin = !cap.final_out.empty();
  TokenBounds bounds(budget, run.expert_out, layer.ranks[r].topk_weights, comb, fin ? &run.final_out : nullptr, K, H);
  for (int ob : {obs_combine, obs_final})
    if (ob == obs_combine ? comb : fin) e.obs[ob].present = true, e.obs[ob].bounded = e.obs[ob].bounded || slots;
  if (!comb && !fin) return;
  with_values(run.combine_out, [&](const auto* pc) {
    with_values(run.final_out, [&](const auto* pf) {
      for (std::int64_t t = 0; t < T; ++t) {
        if (slots) bounds.at(t);
        auto label = [&] { return "token " + std::to_string(t); };
        if (comb) {
          const double m = add_row(e.obs[obs_combine], &cap.combine_out[t * H], pc + t * H, H,
                                   slots ? bounds.combine() : nullptr, -1);
          note_worst(e.obs[obs_combine], m, worst[obs_combine], at, label);
        }
        if (fin) {
          const double m = add_row(e.obs[obs_final], &cap.final_out[t * H], pf + t * H, H,
                                   slots ? bounds.final() : nullptr, -1);
          note_worst(e.obs[obs_final], m, worst[obs_final], at, label);
        }
      }
    });
  });
}

// One rank's tallies added into the layer's, ranks in ascending order: sums add, the first
// structural disagreement is the lowest rank's, the numeric one the worst row's (ties: the lowest
// rank), exactly as scoring the ranks one after another picks them.
void merge_rank(Evaluation& e, std::vector<double>& worst, const Evaluation& part, const std::vector<double>& part_worst) {
  for (int ob = 0; ob < kNumObs; ++ob) {
    const Tally& q = part.obs[ob];
    if (!q.present) continue;
    Tally& t = e.obs[ob];
    t.present = true;
    t.bad += q.bad, t.total += q.total, t.dd += q.dd, t.cc += q.cc, t.xy += q.xy, t.xx_yy += q.xx_yy;
    t.bounded = t.bounded || q.bounded;
    t.worst_ratio = std::max(t.worst_ratio, q.worst_ratio);
    if (part_worst[ob] >= 0) {  // scored row by row: add_numeric keeps the worst row's line
      if (part_worst[ob] > worst[ob]) worst[ob] = part_worst[ob], t.first = q.first;
    } else if (t.first.empty() && !q.first.empty()) {
      t.first = q.first;
    }
  }
}

// Every rank of a layer scored on `threads` threads, each into its own tallies, then merged in
// rank order: the figures do not depend on the thread count.
void score_ranks(const TraceConfig& c, const Layer& layer, const Prediction& p, double tol, const bound::Budget& budget,
                 const std::function<bool(int)>& whole_buffer, int threads, Evaluation& e, std::vector<double>& worst) {
  const int R = c.num_ranks;
  std::vector<Evaluation> part(R);
  std::vector<std::vector<double>> part_worst(R, std::vector<double>(kNumObs, -1.0));
  parallel_items(static_cast<std::size_t>(R), threads, [&](std::size_t r) {
    score_rank(c, layer, static_cast<int>(r), p, tol, budget, whole_buffer(static_cast<int>(r)), part[r], part_worst[r]);
  });
  for (int r = 0; r < R; ++r) merge_rank(e, worst, part[r], part_worst[r]);
}

void find_buffer_issues(const TraceConfig& c, const Layer& layer, const DispatchOptions& base,
                        const std::vector<CaptureCheck>& checks, DispatchModel lib, int threads,
                        std::vector<BufferFinding>& out) {
  const int H = c.hidden;
  for (int r = 0; r < c.num_ranks; ++r) {
    const Captured& cap = layer.ranks[r].captured;
    if (cap.rows == 0 && cap.total_recv < 0) continue;
    BufferFinding f;
    f.layer = layer.index;
    f.rank = r;
    f.full = cap.total_recv > 0 && cap.total_recv == cap.buffer_rows;
    for (const auto& ck : checks)
      for (const auto& m : ck.models)
        if (f.full && ck.rank == r && m.dispatch == lib && m.negative == NegativeIds::skip) f.overflow = m.overflow;
    const CapturedRows cr = decode_captured(layer, r, capture_max_tokens(layer, base), c.top_k);
    const std::int64_t valid = std::min<std::int64_t>(cr.valid, static_cast<std::int64_t>(cap.src_token_pos.size()));
    std::set<std::int64_t> seen;
    for (std::int64_t i = 0; i < valid; ++i)
      if (!seen.insert(cap.src_token_pos[i]).second) ++f.duplicate_positions;
    // Without positions a row's source is unknown; the receive-side deductions judge identical rows then.
    if (!cap.recv_x.empty() && cr.positions) {
      const std::int64_t n = std::min(cr.valid, cap.rows);
      const auto first = first_identical(n, H * sizeof(float), [&](std::int64_t i) { return &cap.recv_x[i * H]; }, threads);
      std::map<std::int64_t, std::set<std::pair<int, std::int64_t>>> sources;  // first row -> its sources
      for (std::int64_t i = 0; i < n; ++i) sources[first[i]].insert({cr.src_rank[i], cr.token[i]});
      for (std::int64_t i = 0; i < n; ++i)
        if (sources[first[i]].size() > 1) ++f.identical_rows;
    }
    out.push_back(f);
  }
}

// The seed's measure for a consumer that computes every id of every row or reads the whole
// buffer: expert computations per distinct source token received, beside what the layer needs.
std::string waste_text(const Trace& tr, const std::vector<int>& layers, const ExpertMap& map, const SimOptions& o) {
  std::int64_t performed = 0, sources = 0, needed = 0;
  for (int l : layers) {
    const RoutingStats st = routing_stats(stats_input(tr.config, map, o), layer_sources(tr, l, map, o));
    performed += st.total_performed();
    sources += st.total_sources();
    needed += st.total_needed();
  }
  const bool all_k = o.consumer.model == ConsumerModel::all_k;
  const std::string what = all_k && o.consumer.whole_buffer ? "the all-k flow over the whole receive buffer"
                           : all_k                         ? "the all-k flow (every id of every row computed)"
                                                           : "reading the whole receive buffer";
  auto ratio = [](std::int64_t a, std::int64_t b) { return b > 0 ? fmt_g(static_cast<double>(a) / static_cast<double>(b)) : "-"; };
  return what + ": " + std::to_string(performed) + " expert computations for " + std::to_string(sources) +
         " distinct source tokens received, " + ratio(performed, sources) + " per source token; the layer needs " +
         std::to_string(needed) + " (token, expert) computations, so " + ratio(performed, needed) + "x what it needs";
}

}  // namespace

const char* obs_name(int o) { return kObsNames[o]; }
bool obs_numeric(int o) { return o >= obs_expert; }

double Tally::error(bool numeric) const {
  if (!present) return 0;
  if (!numeric) return total > 0 ? bad / total : 0;
  if (cc > 0) return std::sqrt(dd / cc);
  return dd > 0 ? 1.0 : 0.0;
}

double Tally::calc_diff() const { return xx_yy > 0 ? 1.0 - 2.0 * xy / xx_yy : 0.0; }

bool Evaluation::explains(int o, double tol) const {
  const Tally& t = obs[o];
  if (!t.present) return true;
  if (obs_numeric(o) && by_bound && t.bounded) return t.worst_ratio <= 1;
  return obs_numeric(o) ? t.error(true) <= tol : t.bad == 0;
}

bool Diagnosis::consistent() const {
  return !ranked.empty() && ranked[0].tested && hypothesis(ranked[0]).correct && ranked[0].unexplained == 0;
}

Verdict Diagnosis::verdict() const {
  const Evaluation* correct = nullptr;
  for (const auto& e : ranked)
    if (hypothesis(e).correct) correct = &e;
  int present = 0;
  for (int o = 0; correct && o < kNumObs; ++o) present += correct->obs[o].present;
  if (!correct || !correct->tested || present == 0) return Verdict::undecided;
  if (consistent()) return has_outputs ? Verdict::consistent : Verdict::buffers_consistent;
  return ranked[0].tested && ranked[0].unexplained == 0 ? Verdict::explained : Verdict::disagrees;
}

int exit_code(Verdict v) {
  switch (v) {
    case Verdict::consistent: return 0;
    case Verdict::explained:
    case Verdict::disagrees: return 1;
    case Verdict::buffers_consistent: return 3;
    case Verdict::undecided: return 4;
  }
  return 4;
}

Diagnosis diagnose(const Trace& trace, const DiagnoseOptions& o) {
  const TraceConfig& c = trace.config;
  Diagnosis d;
  if (o.layer) {
    if (*o.layer < 0 || *o.layer >= static_cast<int>(trace.layers.size()))
      throw Error(where(trace.path, "/layers") + "layer " + std::to_string(*o.layer) + " out of range (" +
                  std::to_string(trace.layers.size()) + " layers)");
    d.layers.push_back(*o.layer);
  } else {
    for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) d.layers.push_back(l);
  }
  for (int l : d.layers)
    for (const RankInput& in : trace.layers[l].ranks) {
      const Captured& cap = in.captured;
      d.has_rows = d.has_rows || cap.rows > 0 || cap.total_recv >= 0;
      d.has_outputs = d.has_outputs || cap.expert_rows > 0 || !cap.combine_out.empty() || !cap.final_out.empty();
    }
  if (!d.has_rows && !d.has_outputs)
    throw Error(where(trace.path, "/layers") + "nothing captured: diagnose needs captured receive rows or outputs");
  d.tolerance = o.tolerance >= 0 ? o.tolerance : tolerance_for(o.base.numerics);
  const bool by_bound = o.tolerance < 0;

  const DispatchModel lib = o.library_set ? o.base.dispatch.model : default_dispatch(c);
  d.hypotheses = catalog(c, lib, o.base);
  if (!o.only.empty()) {
    std::string keys;
    for (const auto& h : d.hypotheses) keys += (keys.empty() ? "" : ", ") + h.key;
    for (const auto& k : o.only)
      if (std::none_of(d.hypotheses.begin(), d.hypotheses.end(), [&](const Hypothesis& h) { return h.key == k; }))
        throw Error("unknown hypothesis '" + k + "' (expected " + keys + ")");
    std::vector<Hypothesis> kept;
    for (auto& h : d.hypotheses)
      if (h.correct || std::find(o.only.begin(), o.only.end(), h.key) != o.only.end()) kept.push_back(std::move(h));
    d.hypotheses = std::move(kept);
  }
  const ExpertMap map = make_expert_map(c);
  d.sources_known = has_source_routing(trace);
  // Rows matched to their sources by content stand in for total_recv and src_token_pos where
  // neither was captured: the models are scored on a copy of the trace that holds them.
  std::optional<Trace> inferred;
  for (int l : d.layers) {
    const auto checks = check_captures(trace, l, map, o.base.dispatch);
    auto rd = read_receive_sides(trace, l, map, o.base.dispatch, checks, d.sources_known);
    for (const auto& x : rd) {
      const Captured& cap = trace.layers[l].ranks[x.rank].captured;
      if (x.matched_end < 0 || cap.total_recv >= 0 || !cap.src_token_pos.empty()) continue;
      if (!inferred) inferred.emplace(trace);
      Captured& ic = inferred->layers[l].ranks[x.rank].captured;
      ic.total_recv = x.matched_end;
      ic.src_token_pos = x.inferred_pos;
      ic.src_pos_encoding = "flat";
    }
    d.readings.insert(d.readings.end(), rd.begin(), rd.end());
  }
  const Trace& scored = inferred ? *inferred : trace;
  for (int l : d.layers) {
    d.checks.push_back(check_captures(scored, l, map, o.base.dispatch));
    for (auto& ck : d.checks.back())
      if (inferred && trace.layers[l].ranks[ck.rank].captured.total_recv < 0 && ck.total_recv >= 0)
        ck.evidence.insert(ck.evidence.begin(), "total_recv " + std::to_string(ck.total_recv) +
                                                    " and src_token_pos inferred by matching rows to sources by content");
    find_buffer_issues(c, scored.layers[l], o.base.dispatch, d.checks.back(), lib, o.base.threads, d.buffers);
  }
  const WeightProvider weights(scored);
  // One backend for every hypothesis, each (token, expert) product computed once.
  std::unique_ptr<ExpertBackend> cpu;
  ExpertBackend* inner = o.base.backend;
  if (!inner) inner = (cpu = make_cpu_backend(scored, weights)).get();
  SharedProducts shared(*inner, c.hidden, o.products_budget, o.base.threads);
  // A whole buffer without total_recv (captured or inferred): its row count is not compared.
  auto whole_buffer = [&](int layer_pos, int r) {
    if (scored.layers[layer_pos].ranks[r].captured.total_recv >= 0) return false;
    for (const auto& rd : d.readings)
      if (rd.layer == scored.layers[layer_pos].index && rd.rank == r) return rd.whole_buffer;
    return false;
  };

  Prediction p;  // one set of buffers, filled by every hypothesis in turn
  ExpertScratch scratch;
  for (int i = 0; i < static_cast<int>(d.hypotheses.size()); ++i) {
    const Hypothesis& h = d.hypotheses[i];
    Evaluation e;
    e.index = i;
    e.by_bound = by_bound;
    // The capture and the hypothesis are judged as two results of the same numerics and combine.
    const bound::Side side{o.base.numerics, bound::partial_levels(name(h.options.combine))};
    const bound::Budget budget(c, side, side);
    if (by_bound && d.bound_label.empty()) d.bound_label = budget.label();
    if (!d.sources_known) {
      e.tested = false;
      e.note = "needs the source routing (every rank's topk_ids and topk_weights): the trace holds none";
      d.ranked.push_back(std::move(e));
      continue;
    }
    if (!d.has_outputs && !h.structural && !h.correct) {
      e.tested = false;
      e.note = "predicts the correct integration's buffers: needs captured outputs";
      d.ranked.push_back(std::move(e));
      continue;
    }
    std::vector<double> worst(kNumObs, -1.0);
    try {
      for (int l : d.layers) {
        Hypothesis hb = h;
        hb.options.backend = &shared;
        hb.options.scratch = &scratch;
        p = predict(scored, l, hb, weights, map, d.has_outputs, std::move(p));
        if (!p.tested) {
          e.tested = false;
          e.note = p.note;
          break;
        }
        if (!p.note.empty() && e.note.find(p.note) == std::string::npos) e.note += (e.note.empty() ? "" : "; ") + p.note;
        score_ranks(c, scored.layers[l], p, d.tolerance, budget, [&](int r) { return whole_buffer(l, r); },
                    o.base.threads, e, worst);
      }
    } catch (const Error& err) {
      e.tested = false;
      e.note = std::string("the simulator rejects it: ") + err.what();
    }
    for (int ob = 0; ob < kNumObs && e.tested; ++ob) {
      if (!e.obs[ob].present) continue;
      if (!e.explains(ob, d.tolerance)) ++e.unexplained;
      e.score += std::min(1.0, e.obs[ob].error(obs_numeric(ob)));
    }
    d.ranked.push_back(std::move(e));
  }
  std::stable_sort(d.ranked.begin(), d.ranked.end(), [](const Evaluation& a, const Evaluation& b) {
    if (a.tested != b.tested) return a.tested;
    if (a.unexplained != b.unexplained) return a.unexplained < b.unexplained;
    // Scores equal to 1e-9 tie: equivalent hypotheses then keep catalog order.
    const double sa = std::round(a.score * 1e9), sb = std::round(b.score * 1e9);
    if (sa != sb) return sa < sb;
    return a.index < b.index;
  });
  const std::int64_t max_tokens =
      o.base.dispatch.max_tokens_per_rank > 0 ? o.base.dispatch.max_tokens_per_rank : c.mori.max_num_inp_token_per_rank;
  d.products_computed = shared.computed();
  d.products_reused = shared.reused();
  if (d.verdict() == Verdict::explained) {
    const SimOptions& ho = d.hypothesis(d.ranked.front()).options;
    if (ho.consumer.model == ConsumerModel::all_k || ho.consumer.whole_buffer) d.answer = waste_text(scored, d.layers, map, ho);
  }
  if (d.verdict() != Verdict::consistent) d.next = capture_next(trace, d.layers, lib, max_tokens, !d.has_outputs);
  return d;
}

}  // namespace moesim::sim
