// The receive-side deductions of moesim diagnose: facts the captured rows give without
// simulating any bug model (diagnose_deduce.hpp). The reasoning follows the libraries' layouts
// (../shared/notes/ep-semantics.md): MORI copies the full global top-k row into one row per
// (token, destination rank), DeepEP HT delivers local ids, a per-(token, expert) dispatch sends
// one copy of a token per local expert it names, and rows past total_recv are stale.
#include "diagnose_deduce.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#include "diagnose_rows.hpp"

namespace moesim::sim {

namespace {

std::string ids_text(const std::int32_t* ids, int K) {
  std::string s = "[";
  for (int k = 0; k < K; ++k) s += (k ? ", " : "") + std::to_string(ids[k]);
  return s + "]";
}

std::string rows_text(const std::vector<std::int64_t>& rows) {
  std::string s;
  const std::size_t shown = std::min<std::size_t>(rows.size(), 4);
  for (std::size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + std::to_string(rows[i]);
  if (rows.size() > shown) s += ", ... (" + std::to_string(rows.size()) + " rows)";
  return "rows " + s;
}

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

template <class T>
std::uint64_t hash_bytes(std::uint64_t h, const T* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t v = 0;
    std::memcpy(&v, &p[i], sizeof(T));
    h = mix(h, v);
  }
  return h;
}

// One captured row's content: ids, weights, x and scales, whichever were captured.
struct Rows {
  const Captured& cap;
  int K, H, S;
  bool same(std::int64_t i, std::int64_t j) const {
    auto eq = [](const auto& v, std::int64_t a, std::int64_t b, int n) {
      return v.empty() || std::memcmp(&v[a * n], &v[b * n], n * sizeof(v[0])) == 0;
    };
    return eq(cap.recv_topk_ids, i, j, K) && eq(cap.recv_weights, i, j, K) && eq(cap.recv_x, i, j, H) &&
           eq(cap.recv_scales, i, j, S);
  }
  std::uint64_t hash(std::int64_t i) const {
    std::uint64_t h = 0;
    if (!cap.recv_topk_ids.empty()) h = hash_bytes(h, &cap.recv_topk_ids[i * K], K);
    if (!cap.recv_weights.empty()) h = hash_bytes(h, &cap.recv_weights[i * K], K);
    if (!cap.recv_x.empty()) h = hash_bytes(h, &cap.recv_x[i * H], H);
    return h;
  }
  bool zero(std::int64_t i) const {
    auto all0 = [](const auto& v, std::int64_t a, int n) {
      for (int q = 0; q < n; ++q)
        if (v[a * n + q] != 0) return false;
      return true;
    };
    return (cap.recv_topk_ids.empty() || all0(cap.recv_topk_ids, i, K)) &&
           (cap.recv_weights.empty() || all0(cap.recv_weights, i, K)) && (cap.recv_x.empty() || all0(cap.recv_x, i, H));
  }
};

// Distinct local experts a row's ids name on `rank`, in the id space read from the ids' range.
std::vector<std::int32_t> local_named(const std::int32_t* ids, int K, const ExpertMap& map, int rank, bool global) {
  std::vector<std::int32_t> out;
  for (int k = 0; k < K; ++k) {
    const std::int32_t id = ids[k];
    const bool mine = global ? id >= 0 && id < map.num_experts && map.rank_of[id] == rank
                             : id >= 0 && id < map.num_local(rank);
    const std::int32_t g = mine ? (global ? id : map.global_of(rank, id)) : -1;
    if (mine && std::find(out.begin(), out.end(), g) == out.end()) out.push_back(g);
  }
  return out;
}

std::string list_text(const std::vector<std::int32_t>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s;
}

// The buffer sizes a whole capture can have: each model's receive buffer at these capacities.
std::string whole_buffer_of(const TraceConfig& c, const ExpertMap& map, const DispatchOptions& base, std::int64_t max_tokens,
                            std::int64_t rows) {
  const int R = c.num_ranks, K = c.top_k;
  const std::string mt = std::to_string(max_tokens);
  struct Size {
    DispatchModel m;
    std::string how;
  };
  const Size sizes[] = {
      {DispatchModel::mori, std::to_string(R) + " ranks x max_num_inp_token_per_rank " + mt + ", MORI's MaxNumTokensToRecv"},
      {DispatchModel::pairs, std::to_string(R) + " ranks x " + mt + " tokens x top-" + std::to_string(K) + ", a per-(token, expert) buffer"},
      {DispatchModel::deepep_ll, std::to_string(map.max_local) + " local experts x " + mt + " tokens x " + std::to_string(R) +
                                     " ranks, DeepEP low-latency's (and pplx's) expert-major buffer"},
  };
  for (const auto& s : sizes) {
    DispatchOptions o = base;
    o.model = s.m;
    if (max_tokens > 0 && buffer_rows(o, R, map.max_local, K, max_tokens) == rows) return s.how;
  }
  return {};
}

}  // namespace

bool has_source_routing(const Trace& trace) {
  for (const auto& l : trace.layers)
    for (const auto& in : l.ranks)
      if (in.num_tokens > 0) return true;
  return false;
}

std::vector<ReceiveReading> read_receive_sides(const Trace& trace, int layer_pos, const ExpertMap& map,
                                               const DispatchOptions& base, const std::vector<CaptureCheck>& checks,
                                               bool sources_known) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers.at(layer_pos);
  const int R = c.num_ranks, K = c.top_k, H = c.hidden;
  std::int64_t max_tokens = base.max_tokens_per_rank > 0 ? base.max_tokens_per_rank : c.mori.max_num_inp_token_per_rank;
  bool max_guessed = false;
  if (max_tokens <= 0 && sources_known) {
    for (const auto& in : layer.ranks) max_tokens = std::max(max_tokens, in.num_tokens);
    max_guessed = true;
  }
  std::vector<ReceiveReading> out;
  for (int r = 0; r < R; ++r) {
    const Captured& cap = layer.ranks[r].captured;
    if (cap.rows == 0 && cap.total_recv < 0) continue;
    ReceiveReading rd;
    rd.layer = layer.index;
    rd.rank = r;
    rd.rows = cap.rows;
    const std::string at = "rank " + std::to_string(r) + ": ";
    const Rows rows{cap, K, H, c.scales_per_token()};
    const bool have_ids = !cap.recv_topk_ids.empty();
    const std::int64_t N = cap.rows;

    // The whole buffer: the row count says nothing about what the dispatch sent.
    if (cap.total_recv < 0 && N > 0) {
      std::string how = whole_buffer_of(c, map, base, max_tokens, N);
      if (how.empty() && cap.buffer_rows == N) how = "the captured buffer_rows";
      if (!how.empty()) {
        rd.whole_buffer = true;
        rd.sentences.push_back(at + "the " + std::to_string(N) + " captured rows are the whole receive buffer (" +
                               std::to_string(N) + " = " + how + (max_guessed ? "; the largest rank's token count taken as the capacity" : "") +
                               "); only rows [0, total_recv) are valid and total_recv was not captured: capture "
                               "total_recv. The row count is not compared with any model.");
      }
    }

    // The id space from the ids' range (check_captures read it).
    const std::int64_t lim = cap.total_recv >= 0 ? std::min(cap.total_recv, N) : N;
    IdRange range;
    for (const auto& ck : checks)
      if (ck.rank == r) range = ck.range;
    const bool global = range.space == "global";
    if (have_ids) rd.id_space = range.space;
    if (global) {
      rd.models = {"mori", "pairs"};
      rd.sentences.push_back(at + "the ids are global (they reach " + std::to_string(range.highest) + ", beyond the " +
                             std::to_string(map.max_local) +
                             " experts of one rank): rows carrying the full top-k row verbatim, as MORI (one row per "
                             "(token, rank)) or a per-(token, expert) layout like the seed's (pairs) deliver them; not "
                             "deepep-ht (local ids), deepep-ll or pplx (no id row).");
    } else if (range.space == "local") {
      rd.models = {"deepep-ht", "deepep-ll", "pplx"};
      rd.sentences.push_back(at + "the ids are local (every id in [-1, " + std::to_string(map.max_local) + "), " +
                             std::to_string(range.minus_ones) + " of them -1; this rank's global ids would reach " +
                             std::to_string(map.experts_of_rank[r].back()) + "): DeepEP's layouts, not MORI's (global ids verbatim).");
    }

    // Stale rows by their content: all zeros, no local expert named, an identical block at the tail.
    std::vector<char> zero(N, 0), none(N, 0);
    std::int64_t zeros = 0, nones = 0;
    for (std::int64_t i = 0; i < N; ++i) {
      zero[i] = (have_ids || !cap.recv_x.empty()) && rows.zero(i);
      none[i] = !zero[i] && have_ids && (global || rd.id_space == "local") &&
                local_named(&cap.recv_topk_ids[i * K], K, map, r, global).empty();
      zeros += zero[i];
      nones += none[i];
    }
    if (cap.total_recv < 0 && N > 1) {
      std::int64_t run = N - 1;
      while (run > 0 && rows.same(run - 1, N - 1)) --run;
      const bool block = run > 0 && N - run >= 2;  // a buffer identical throughout says nothing by itself
      std::int64_t a = N;
      while (a > 0 && (zero[a - 1] || none[a - 1] || (block && a - 1 >= run))) --a;
      if (a < N) {
        rd.stale_from = a;
        std::int64_t tz = 0, tn = 0;
        for (std::int64_t i = a; i < N; ++i) tz += zero[i], tn += none[i];
        std::string why;
        if (tz) why += std::to_string(tz) + " all zeros";
        if (tn) why += (why.empty() ? "" : ", ") + std::to_string(tn) + " naming no expert of rank " + std::to_string(r);
        if (block) why += (why.empty() ? "" : ", ") + std::string("the last ") + std::to_string(N - run) + " identical";
        rd.sentences.push_back(at + "rows [" + std::to_string(a) + ", " + std::to_string(N) + ") are stale (" + why +
                               "): no dispatch sends such rows, so the valid rows end at or before row " + std::to_string(a) + ".");
      }
    }
    const std::int64_t valid_end = cap.total_recv >= 0 ? lim : (rd.stale_from >= 0 ? rd.stale_from : N);
    std::int64_t inner = 0;
    for (std::int64_t i = 0; i < valid_end; ++i) inner += zero[i] || none[i];
    if (inner > 0)
      rd.sentences.push_back(at + std::to_string(inner) + " of rows [0, " + std::to_string(valid_end) + ") " +
                             (cap.total_recv >= 0 ? "(the valid rows) " : "") +
                             "are all zeros or name no expert of this rank: no dispatch sends them (stale, or -1 ids sent to "
                             "rank 0 by MORI before mid-2026 when this is rank 0).");

    // Identical rows against the local experts their ids name.
    if (have_ids || !cap.recv_x.empty()) {
      std::unordered_map<std::uint64_t, std::vector<std::int64_t>> by_hash;
      std::vector<std::vector<std::int64_t>> groups;
      for (std::int64_t i = 0; i < valid_end; ++i) {
        if (zero[i]) continue;
        auto& bucket = by_hash[rows.hash(i)];
        bool placed = false;
        for (std::int64_t gi : bucket)
          if (rows.same(groups[gi].front(), i)) {
            groups[gi].push_back(i);
            placed = true;
            break;
          }
        if (!placed) {
          bucket.push_back(static_cast<std::int64_t>(groups.size()));
          groups.push_back({i});
        }
      }
      std::vector<const std::vector<std::int64_t>*> over, within;
      for (const auto& g : groups) {
        if (g.size() < 2) continue;
        ++rd.identical_groups;
        const auto n = have_ids && (global || rd.id_space == "local")
                           ? static_cast<std::int64_t>(local_named(&cap.recv_topk_ids[g.front() * K], K, map, r, global).size())
                           : -1;
        if (n >= 0 && static_cast<std::int64_t>(g.size()) > n) over.push_back(&g), ++rd.over_pair_groups;
        else within.push_back(&g);
      }
      rd.pairs_ruled_out = !over.empty();
      auto describe = [&](const std::vector<std::int64_t>& g, bool is_over) {
        const std::int32_t* ids = have_ids ? &cap.recv_topk_ids[g.front() * K] : nullptr;
        std::string same = ids ? "ids " + ids_text(ids, K) : "", missing;
        auto part = [&](bool held, const char* name) {
          std::string& to = held ? same : missing;
          to += (to.empty() ? "" : ", ") + std::string(name);
        };
        part(!cap.recv_weights.empty(), "weights");
        part(!cap.recv_x.empty(), "recv_x");
        std::string s = at + rows_text(g) + " are identical in " + same + (missing.empty() ? "" : " (" + missing + " not captured)");
        if (!ids || !(global || rd.id_space == "local")) return s + ".";
        const auto named = local_named(ids, K, map, r, global);
        const std::string n = std::to_string(named.size()), copies = std::to_string(g.size());
        s += "; their ids put " + n + " of their experts on rank " + std::to_string(r) + " (" + list_text(named) +
             "): a per-(token, expert) dispatch gives at most " + n + " copies of one token, a per-(token, rank) dispatch 1; ";
        if (is_over)
          s += copies + " copies rule out per-(token, expert) duplication of one token: these are distinct source tokens "
                        "with identical routing (a warm-up or padding batch) or stale rows.";
        else
          s += copies + " copies fit per-(token, expert) copies of one token, or distinct tokens with identical routing; "
                        "under a per-(token, rank) dispatch (MORI) they are distinct tokens.";
        return s;
      };
      std::size_t shown = 0;
      for (const auto* g : over)
        if (shown++ < 2) rd.sentences.push_back(describe(*g, true));
      for (const auto* g : within)
        if (shown++ < 2) rd.sentences.push_back(describe(*g, false));
      if (rd.identical_groups > static_cast<std::int64_t>(std::min<std::size_t>(shown, 2)))
        rd.sentences.push_back(at + std::to_string(rd.identical_groups) + " groups of identical rows in rows [0, " +
                               std::to_string(valid_end) + "); " + std::to_string(rd.over_pair_groups) +
                               " of them have more copies than the local experts their ids name.");
    }

    // Matching by content: each row's candidate source tokens, when positions were not captured.
    if (sources_known && cap.src_token_pos.empty() && have_ids && (global || rd.id_space == "local") && N > 0) {
      std::unordered_map<std::uint64_t, std::vector<std::pair<int, std::int64_t>>> src_of;
      std::vector<std::int32_t> key(K);
      auto key_of = [&](const std::int32_t* ids) {
        for (int k = 0; k < K; ++k) {
          const std::int32_t id = ids[k];
          const bool mine = id >= 0 && id < map.num_experts && map.rank_of[id] == r;
          key[k] = global ? id : (mine ? map.local_of[id] : -1);
        }
        return hash_bytes(0, key.data(), K);
      };
      for (int s = 0; s < R; ++s) {
        const RankInput& in = layer.ranks[s];
        for (std::int64_t t = 0; t < in.num_tokens; ++t)
          if (!local_named(&in.topk_ids[t * K], K, map, r, true).empty())
            src_of[key_of(&in.topk_ids[t * K])].push_back({s, t});
      }
      std::vector<std::int64_t> count(N, 0);
      std::map<std::pair<int, std::int64_t>, std::int64_t> rows_of_source;  // rows given to each source
      std::vector<std::pair<int, std::int64_t>> pick(N, {-1, -1});
      for (std::int64_t i = 0; i < N; ++i) {
        auto it = src_of.find(key_of(&cap.recv_topk_ids[i * K]));
        if (it == src_of.end()) continue;
        for (const auto& [s, t] : it->second) {
          const RankInput& in = layer.ranks[s];
          for (int k = 0; k < K; ++k) key[k] = in.topk_ids[t * K + k];
          key_of(key.data());  // key now holds the source row in the captured id space
          if (std::memcmp(key.data(), &cap.recv_topk_ids[i * K], K * sizeof(std::int32_t)) != 0) continue;
          if (!cap.recv_x.empty() && !in.x.empty() &&
              std::memcmp(&cap.recv_x[i * H], &in.x[t * H], H * sizeof(float)) != 0)
            continue;
          ++count[i];
          // Among equal candidates, the one given the fewest rows so far (the first on a tie).
          const std::pair<int, std::int64_t> cand{s, t};
          if (pick[i].first < 0 || rows_of_source[cand] < rows_of_source[pick[i]]) pick[i] = cand;
        }
        if (count[i] > 0) ++rows_of_source[pick[i]];
      }
      std::int64_t a = N;
      while (a > 0 && count[a - 1] == 0) --a;
      rd.matched_end = a;
      const std::int64_t enc_tokens = capture_max_tokens(layer, base);
      rd.inferred_pos.assign(a, -1);
      for (std::int64_t i = 0; i < a; ++i)
        if (count[i] > 0)
          rd.inferred_pos[i] = encode_src_pos(SrcPosEncoding::flat, R, enc_tokens, K, pick[i].first, pick[i].second, -1);
      std::int64_t one = 0, several = 0, unmatched = 0, repeated = 0;
      for (std::int64_t i = 0; i < a; ++i) one += count[i] == 1, several += count[i] > 1, unmatched += count[i] == 0;
      for (const auto& [src, n] : rows_of_source) repeated += n > 1 && one > 0;
      std::string s = at + "matched by content (no src_token_pos): rows [0, " + std::to_string(a) + ") match source tokens " +
                      "routed to this rank (" + std::to_string(one) + " exactly one, " + std::to_string(several) +
                      " several, " + std::to_string(unmatched) + " none)";
      if (a < N) s += "; rows [" + std::to_string(a) + ", " + std::to_string(N) + ") match no source token: a stale tail";
      if (repeated) s += "; " + std::to_string(repeated) + " source tokens matched by more than one row";
      std::string sends, same;
      for (const auto& ck : checks)
        if (ck.rank == r)
          for (const auto& m : ck.models) {
            sends += (sends.empty() ? "" : ", ") + m.model + " sends " + std::to_string(m.expected_rows);
            if (m.expected_rows == a) same += (same.empty() ? "" : ", ") + m.model;
          }
      if (!sends.empty()) s += "; rows to this rank: " + sends;
      s += same.empty() ? "; no dispatch model sends that many rows" : "; the valid prefix has the length " + same + " send";
      rd.sentences.push_back(s + ".");
      if (cap.total_recv < 0)
        rd.sentences.push_back(at + "the models are scored with total_recv = " + std::to_string(a) +
                               " and each row's source from these matches (ambiguous rows given to the candidate with the "
                               "fewest rows).");
    }
    out.push_back(std::move(rd));
  }
  return out;
}

std::vector<std::string> capture_next(const Trace& trace, const std::vector<int>& layers, DispatchModel library,
                                      std::int64_t max_tokens, bool need_outputs) {
  const TraceConfig& c = trace.config;
  const int R = c.num_ranks, K = c.top_k, H = c.hidden;
  bool no_total = false, no_pos = false, no_x = false;
  std::set<int> captured;
  for (int l : layers)
    for (int r = 0; r < R; ++r) {
      const Captured& cap = trace.layers[l].ranks[r].captured;
      if (cap.rows == 0 && cap.total_recv < 0) continue;
      captured.insert(r);
      no_total = no_total || cap.total_recv < 0;
      no_pos = no_pos || cap.src_token_pos.empty();
      no_x = no_x || cap.recv_x.empty();
    }
  const bool mori = library == DispatchModel::mori;
  const std::string T = max_tokens > 0 ? std::to_string(max_tokens) : "T_r";
  const std::string buf = max_tokens > 0 ? std::to_string(R * max_tokens) : "N";
  const std::string k = std::to_string(K), h = std::to_string(H);
  std::vector<std::string> out;
  if (no_total)
    out.push_back(mori ? "total_recv: the last output of op.dispatch(...), a [1] int32 tensor on the device (rows [0, "
                         "total_recv) of the buffer are valid)"
                       : "total_recv: the number of valid rows of each receive buffer");
  if (no_pos)
    out.push_back(mori ? "src_token_pos: op.get_dispatch_src_token_pos() right after dispatch, [total_recv] int32, with "
                         "its encoding (flat at MORI HEAD, legacy before 2026-04)"
                       : "src_token_pos: the source (rank, token) of each valid row");
  if (!has_source_routing(trace))
    out.push_back("every rank's routing as passed to dispatch: topk_ids [" + T + ", " + k + "] int32 and topk_weights [" + T +
                  ", " + k + "] float32, and its tokens x [" + T + ", " + h + "]" +
                  (mori ? " (the input, weights and indices of op.dispatch)" : ""));
  if (no_x)
    out.push_back("recv_x: the received tokens, rows [0, total_recv) of the " + std::string(mori ? "first output of op.dispatch " : "") +
                  "[" + buf + ", " + h + "]");
  if (!captured.empty() && static_cast<int>(captured.size()) < R)
    out.push_back("the same tensors on the other " + std::to_string(R - static_cast<int>(captured.size())) +
                  " ranks (only rank" + (captured.size() > 1 ? "s " : " ") + [&] {
                    std::string s;
                    for (int r : captured) s += (s.empty() ? "" : ", ") + std::to_string(r);
                    return s;
                  }() + " captured)");
  if (need_outputs)
    out.push_back(std::string("the consumer's result: expert_out [total_recv, ") + h + "] (what " +
                  (mori ? "fused_moe" : "the expert side") + " returned per received row) and combine_out [" + T + ", " + h +
                  "] on each rank" + (mori ? " (op.combine's output)" : ""));
  return out;
}

}  // namespace moesim::sim
