#include "bisect.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>
#include <tuple>

#include "error.hpp"
#include "temp_files.hpp"
#include "run_file.hpp"
#include "agreement.hpp"

namespace moesim::sim {

namespace {

// One layer of `t` as a trace of its own; the layer keeps its index, so generated weights match.
Trace single_layer(const Trace& t, std::size_t pos) {
  Trace one;
  one.config = t.config;
  one.weight_spec = t.weight_spec;
  one.path = t.path;
  one.layers = {t.layers[pos]};
  return one;
}

std::int64_t tokens_of(const Layer& l) {
  std::int64_t n = 0;
  for (const auto& r : l.ranks) n += r.num_tokens;
  return n;
}

// Scratch files removed however bisect ends.
// The candidate's and the reference's run files of each test, removed at the end or on a signal.
struct Scratch {
  temp_files::Scratch a_file, b_file;
  const std::string &a, &b;
  explicit Scratch(const std::string& dir)
      : a_file(dir + "/moesim-bisect-" + std::to_string(::getpid()) + "-candidate.h5"),
        b_file(dir + "/moesim-bisect-" + std::to_string(::getpid()) + "-reference.h5"),
        a(a_file.path()),
        b(b_file.path()) {}
};

Divergence locate(const diff::Result& r, const RankOrigin& origin, int layer_index) {
  Divergence d;
  d.verdict = r.verdict();
  for (const auto& v : r.divergences()) {
    if (v.layer < 0) continue;  // /stats and root objects are not pipeline stages
    d.found = true;
    d.layer = layer_index;
    d.stage = v.stage;
    d.dataset = v.path;
    d.what = v.what;
    break;
  }
  if (!d.found) return d;
  for (const auto& ds : r.datasets) {
    if (ds.path != d.dataset) continue;
    const diff::Location& l = ds.max_abs_at;
    const int rank = l.token >= 0 ? l.rank : l.src_rank;
    const std::int64_t tok = l.token >= 0 ? l.token : l.src_token;
    d.max_abs = ds.metrics.max_abs;
    if (rank >= 0 && rank < static_cast<int>(origin.size()) && tok >= 0 &&
        tok < static_cast<std::int64_t>(origin[rank].size())) {
      d.rank = origin[rank][static_cast<std::size_t>(tok)].first;
      d.token = origin[rank][static_cast<std::size_t>(tok)].second;
    }
  }
  return d;
}

}  // namespace

Divergence find_divergence(const Trace& trace, const Origin& origin, const BisectOptions& o, int& tests) {
  const ExpertMap map = make_expert_map(trace.config);
  diff::Options dopt;
  dopt.tolerances = o.tolerances;
  Scratch scratch(o.work_dir);
  Divergence none;
  double worst = -1;
  for (std::size_t pos = 0; pos < trace.layers.size(); ++pos) {
    if (tokens_of(trace.layers[pos]) == 0) continue;
    ++tests;
    const Trace one = single_layer(trace, pos);
    const WeightProvider weights(one);
    LayerRun cand = simulate_layer(one, 0, weights, map, o.candidate);
    LayerRun ref = simulate_layer(one, 0, weights, map, o.reference);
    if (o.fault && o.fault->layer == one.layers[0].index)
      apply_fault(cand, *o.fault, origin[pos], trace.config.hidden, trace.config.top_k);
    RunDescription dc{o.candidate, judge_pairing(o.candidate.dispatch.model, o.candidate.consumer, o.candidate.combine),
                      "moesim bisect (candidate)"};
    RunDescription dr{o.reference, judge_pairing(o.reference.dispatch.model, o.reference.consumer, o.reference.combine),
                      "moesim bisect (reference)"};
    write_run(scratch.a, one, {cand}, dc);
    write_run(scratch.b, one, {ref}, dr);
    dopt.routing = &one;  // the cut trace's routing, not the file the run files name
    const diff::Result r = diff::run(scratch.a, scratch.b, dopt);
    const Divergence d = locate(r, origin[pos], one.layers[0].index);
    if (d.found) return d;
    if (r.worst.ratio >= worst) worst = r.worst.ratio, none.verdict = d.verdict;  // the layer nearest its bound
  }
  return none;
}

namespace {

// Classic ddmin (Zeller): the smallest subset, 1-minimal, that still makes `fails` true.
template <class T>
std::vector<T> ddmin(std::vector<T> items, const std::function<bool(const std::vector<T>&)>& fails, int& budget) {
  std::size_t n = 2;
  while (items.size() >= 2 && budget > 0) {
    const std::size_t chunk = (items.size() + n - 1) / n;
    bool reduced = false;
    for (std::size_t begin = 0; begin < items.size() && !reduced && budget > 0; begin += chunk) {
      const auto first = items.begin() + static_cast<std::ptrdiff_t>(begin);
      const auto last = items.begin() + static_cast<std::ptrdiff_t>(std::min(begin + chunk, items.size()));
      std::vector<T> part(first, last), rest(items.begin(), first);
      rest.insert(rest.end(), last, items.end());
      if (fails(part)) {
        items = std::move(part);
        n = 2;
        reduced = true;
      } else if (n > 2 && fails(rest)) {
        items = std::move(rest);
        n = std::max<std::size_t>(n - 1, 2);
        reduced = true;
      }
    }
    if (reduced) continue;
    if (n >= items.size()) break;
    n = std::min(items.size(), 2 * n);
  }
  return items;
}

using Token = TokenId;                                 // (rank, original token)
using Slot = std::tuple<int, std::int64_t, int>;        // (rank, original token, slot)

// The trace cut to layers [0, pos]: earlier layers with no tokens, layer `pos` with `keep`
// tokens and the `masked` slots set to -1 with weight 0. With fewer `ranks` than the trace's,
// placement becomes contiguous over them and token (r, t) moves to rank r % ranks. x is
// stored, captures dropped.
Trace cut(const Trace& t, std::size_t pos, const std::vector<Token>& keep, const std::set<Slot>& masked, int ranks,
          Origin& origin) {
  Trace out;
  out.config = t.config;
  out.weight_spec = t.weight_spec;
  out.path = t.path;
  if (ranks != t.config.num_ranks) {
    out.config.num_ranks = ranks;
    out.config.placement = contiguous_placement(t.config.num_experts, ranks);
  }
  const auto H = static_cast<std::size_t>(t.config.hidden), K = static_cast<std::size_t>(t.config.top_k);
  const auto S = static_cast<std::size_t>(t.config.scales_per_token());
  const auto R = static_cast<std::size_t>(ranks);
  origin.assign(pos + 1, RankOrigin(R));
  for (std::size_t l = 0; l <= pos; ++l) {
    Layer layer;
    layer.index = t.layers[l].index;
    layer.step = t.layers[l].step;
    layer.weights = t.layers[l].weights;
    layer.ranks.resize(R);
    if (l == pos)
      for (const auto& [r, tok] : keep) {
        const RankInput& src = t.layers[l].ranks[static_cast<std::size_t>(r)];
        RankInput& dst = layer.ranks[static_cast<std::size_t>(r) % R];
        const auto i = static_cast<std::size_t>(tok);
        ++dst.num_tokens;
        dst.x.insert(dst.x.end(), src.x.begin() + i * H, src.x.begin() + (i + 1) * H);
        if (!src.x_scales.empty())
          dst.x_scales.insert(dst.x_scales.end(), src.x_scales.begin() + i * S, src.x_scales.begin() + (i + 1) * S);
        for (std::size_t k = 0; k < K; ++k) {
          const bool off = masked.count({r, tok, static_cast<int>(k)}) > 0;
          dst.topk_ids.push_back(off ? -1 : src.topk_ids[i * K + k]);
          dst.topk_weights.push_back(off ? 0.0f : src.topk_weights[i * K + k]);
        }
        origin[l][static_cast<std::size_t>(r) % R].push_back({r, tok});
      }
    out.layers.push_back(std::move(layer));
  }
  return out;
}

Origin identity(const Trace& t) {
  Origin o(t.layers.size());
  for (std::size_t l = 0; l < t.layers.size(); ++l)
    for (const auto& r : t.layers[l].ranks) {
      const int rank = static_cast<int>(o[l].size());
      o[l].emplace_back();
      for (std::int64_t i = 0; i < r.num_tokens; ++i) o[l].back().push_back({rank, i});
    }
  return o;
}

}  // namespace

BisectResult bisect(const Trace& trace, const BisectOptions& o) {
  BisectResult res;
  res.first = find_divergence(trace, identity(trace), o, res.tests);
  if (!res.first.found) return res;
  std::size_t pos = 0;
  while (trace.layers[pos].index != res.first.layer) ++pos;
  const Layer& layer = trace.layers[pos];

  {  // The correct pairing must itself agree with the CPU reference model on this layer.
    const Trace one = single_layer(trace, pos);
    const WeightProvider weights(one);
    const ExpertMap map = make_expert_map(one.config);
    const LayerRun ref = simulate_layer(one, 0, weights, map, o.reference);
    ReferenceOptions ro;
    ro.numerics = o.reference.numerics;
    ro.fp8_format = o.reference.fp8_format;
    ro.threads = o.reference.threads;
    const Agreement a = compare_final(ref, run_layer(one, 0, weights, ro), one, 0, o.reference.numerics, o.reference.combine);
    res.reference_agrees = a.agrees();
    if (!res.reference_agrees)
      res.reference_note = "the correct pairing disagrees with the reference model on " +
                           std::to_string(a.bad_tokens) + " tokens of layer " + std::to_string(layer.index) + ": " +
                           a.verdict();
  }

  int budget = o.max_tests;
  std::vector<Token> all;
  for (int r = 0; r < static_cast<int>(layer.ranks.size()); ++r)
    for (std::int64_t t = 0; t < layer.ranks[static_cast<std::size_t>(r)].num_tokens; ++t) all.emplace_back(r, t);
  res.tokens_before = static_cast<std::int64_t>(all.size());
  const diff::Stage stage = res.first.stage;
  std::set<Slot> masked;
  const int R = trace.config.num_ranks;
  auto still = [&](const std::vector<Token>& keep, const std::set<Slot>& mask, int ranks) {
    if (keep.empty()) return false;
    --budget;
    Origin origin;
    const Trace sub = cut(trace, pos, keep, mask, ranks, origin);
    try {
      const Divergence d = find_divergence(sub, origin, o, res.tests);
      return d.found && d.stage == stage;
    } catch (const Error&) {
      return false;  // a subset the simulator rejects does not reproduce the divergence
    }
  };
  const std::vector<Token> tokens =
      ddmin<Token>(all, [&](const std::vector<Token>& keep) { return still(keep, masked, R); }, budget);

  // Then the top-k slots of the kept tokens: dropping a slot drops the expert it names.
  std::vector<Slot> slots;
  for (const auto& [r, t] : tokens)
    for (int k = 0; k < trace.config.top_k; ++k)
      if (layer.ranks[static_cast<std::size_t>(r)].topk_ids[static_cast<std::size_t>(t * trace.config.top_k + k)] >= 0)
        slots.emplace_back(r, t, k);
  res.slots_before = static_cast<std::int64_t>(slots.size());
  auto with_only = [&](const std::vector<Slot>& keep) {
    std::set<Slot> mask(slots.begin(), slots.end());
    for (const auto& s : keep) mask.erase(s);
    return mask;
  };
  std::vector<Slot> kept_slots = slots;
  // ddmin needs at least one slot; a divergence that needs none is checked first.
  if (!slots.empty() && still(tokens, with_only({}), R)) kept_slots.clear();
  else if (!slots.empty())
    kept_slots = ddmin<Slot>(slots, [&](const std::vector<Slot>& keep) { return still(tokens, with_only(keep), R); }, budget);
  masked = with_only(kept_slots);
  res.slots_after = static_cast<std::int64_t>(kept_slots.size());

  // Then the rank count: the fewest ranks (a divisor of E, contiguous placement) that still diverge.
  res.ranks_before = res.ranks_after = R;
  if (trace.config.placement.kind == PlacementKind::contiguous)
    for (int ranks = 1; ranks < R && budget > 0; ++ranks)
      if (trace.config.num_experts % ranks == 0 && still(tokens, masked, ranks)) {
        res.ranks_after = ranks;
        break;
      }

  Origin origin;
  res.minimal = cut(trace, pos, tokens, masked, res.ranks_after, origin);
  res.experts_before = res.experts_after = trace.config.num_experts;
  if (budget > 0)
    if (auto fewer = compact_experts(trace, pos, res.minimal)) {
      --budget;
      try {
        const Divergence d = find_divergence(*fewer, origin, o, res.tests);
        if (d.found && d.stage == stage) {
          res.minimal = std::move(*fewer);
          res.experts_after = res.minimal.config.num_experts;
        }
      } catch (const Error&) {
        // the simulator rejects it: keep every expert
      }
    }
  res.kept_tokens = tokens;
  if (o.fault && o.fault->layer == layer.index)
    for (std::size_t r = 0; r < origin[pos].size(); ++r)
      for (std::size_t t = 0; t < origin[pos][r].size(); ++t)
        if (origin[pos][r][t] == TokenId{o.fault->rank, o.fault->token}) {
          res.minimal_fault = *o.fault;
          res.minimal_fault->rank = static_cast<int>(r);
          res.minimal_fault->token = static_cast<std::int64_t>(t);
        }
  // The minimal trace's own numbering: its fault (above) and its divergence name local tokens.
  for (std::size_t r = 0; r < origin[pos].size(); ++r)
    for (std::size_t t = 0; t < origin[pos][r].size(); ++t)
      origin[pos][r][t] = {static_cast<int>(r), static_cast<std::int64_t>(t)};
  BisectOptions local = o;
  local.fault = res.minimal_fault;
  res.minimal_divergence = find_divergence(res.minimal, origin, local, res.tests);
  return res;
}

}  // namespace moesim::sim
