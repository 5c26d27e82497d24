#include "dispatch.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <string>

#include "error.hpp"
#include "random.hpp"
#include "route.hpp"

namespace moesim::sim {

namespace {
constexpr DispatchModel kModels[] = {DispatchModel::mori, DispatchModel::deepep_ht, DispatchModel::deepep_ll,
                                     DispatchModel::pplx, DispatchModel::pairs};

// Fisher-Yates over [begin, end) with a counter-based stream: the same seed gives the same
// permutation on any machine and thread count.
void shuffle_range(std::vector<std::int64_t>& order, std::int64_t begin, std::int64_t end, std::uint64_t stream) {
  for (std::int64_t i = end - begin - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(uniform01(stream, static_cast<std::uint64_t>(i)) * static_cast<double>(i + 1));
    std::swap(order[begin + i], order[begin + std::min(j, i)]);
  }
}

// Stream key of deepep-ll's order of source blocks inside a local expert's block.
constexpr std::uint64_t kSourceOrderKey = 0x736f75726365ULL;

struct PendingRow {
  std::int32_t src_rank, src_token;
  RowDest d;
};
}  // namespace

std::string_view name(DispatchModel m) {
  switch (m) {
    case DispatchModel::mori: return "mori";
    case DispatchModel::deepep_ht: return "deepep-ht";
    case DispatchModel::deepep_ll: return "deepep-ll";
    case DispatchModel::pplx: return "pplx";
    case DispatchModel::pairs: return "pairs";
  }
  return "?";
}

DispatchModel parse_dispatch(std::string_view s) {
  for (auto m : kModels)
    if (name(m) == s) return m;
  throw Error("unknown dispatch model '" + std::string(s) + "' (expected mori, deepep-ht, deepep-ll, pplx, pairs)");
}

bool blocks_by_source(DispatchModel m) { return m == DispatchModel::deepep_ht || m == DispatchModel::deepep_ll; }

std::int64_t pack_layout_range(std::int64_t begin, std::int64_t count) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(begin) << 32 | static_cast<std::uint32_t>(count));
}

bool rank_dedup(DispatchModel m) { return m == DispatchModel::mori || m == DispatchModel::deepep_ht; }
bool expert_major(DispatchModel m) { return m == DispatchModel::deepep_ll || m == DispatchModel::pplx; }

std::string_view name(IdSpace s) {
  switch (s) {
    case IdSpace::global: return "global";
    case IdSpace::local: return "local";
    case IdSpace::implied: return "implied";
  }
  return "?";
}

IdSpace id_space(DispatchModel m) {
  if (m == DispatchModel::deepep_ht) return IdSpace::local;
  if (expert_major(m)) return IdSpace::implied;
  return IdSpace::global;
}

std::string_view name(SrcPosEncoding e) {
  switch (e) {
    case SrcPosEncoding::flat: return "flat";
    case SrcPosEncoding::legacy: return "legacy";
    case SrcPosEncoding::pair: return "pair";
  }
  return "?";
}

SrcPosEncoding parse_src_pos_encoding(std::string_view s) {
  for (auto e : {SrcPosEncoding::flat, SrcPosEncoding::legacy, SrcPosEncoding::pair})
    if (name(e) == s) return e;
  throw Error("unknown src_token_pos encoding '" + std::string(s) + "' (expected flat, legacy, pair)");
}

std::int64_t encode_src_pos(SrcPosEncoding e, int num_ranks, std::int64_t max_tokens, int top_k, int src_rank,
                            std::int64_t token, int slot) {
  switch (e) {
    case SrcPosEncoding::flat: return src_rank * (num_ranks * max_tokens) + token;
    case SrcPosEncoding::legacy: return src_rank * max_tokens + token;
    case SrcPosEncoding::pair: return (src_rank * max_tokens + token) * top_k + slot;
  }
  return -1;
}

bool decode_src_pos(SrcPosEncoding e, int num_ranks, std::int64_t max_tokens, int top_k, std::int64_t pos,
                    int& src_rank, std::int64_t& token, int& slot) {
  // Every operand may come from a damaged file: no division by zero, no overflowing product,
  // and the rank is range-checked in 64 bits before it narrows (a rank of 2^31 must not wrap).
  if (pos < 0 || max_tokens <= 0 || num_ranks <= 0) return false;
  slot = -1;
  std::int64_t stride = 0;
  switch (e) {
    case SrcPosEncoding::flat:
      if (max_tokens > std::numeric_limits<std::int64_t>::max() / num_ranks) return false;
      stride = num_ranks * max_tokens;
      break;
    case SrcPosEncoding::legacy: stride = max_tokens; break;
    case SrcPosEncoding::pair:
      if (top_k <= 0) return false;
      slot = static_cast<int>(pos % top_k);
      pos /= top_k;
      stride = max_tokens;
      break;
  }
  const std::int64_t rank = pos / stride;
  token = pos % stride;
  if (rank >= num_ranks || token >= max_tokens) return false;
  src_rank = static_cast<int>(rank);
  return true;
}

std::int64_t default_max_tokens(const std::vector<SourceRouting>& sources) {
  std::int64_t m = 1;
  for (const auto& s : sources) m = std::max(m, s.num_tokens);
  return m;
}

std::int64_t buffer_rows(const DispatchOptions& o, int R, int max_local, int K, std::int64_t max_tokens) {
  switch (o.model) {
    case DispatchModel::mori: {
      // MaxNumTokensToRecv = world_size * max_num_inp_token_per_rank, capped by max_total_recv_tokens.
      const std::int64_t cap = R * max_tokens;
      return o.max_total_recv > 0 ? std::min(cap, o.max_total_recv) : cap;
    }
    case DispatchModel::pairs: return o.max_total_recv > 0 ? o.max_total_recv : R * max_tokens * K;
    case DispatchModel::deepep_ll:
    case DispatchModel::pplx: return static_cast<std::int64_t>(max_local) * max_tokens * R;
    case DispatchModel::deepep_ht: return -1;  // sized to the exact count by notify_dispatch
  }
  return -1;
}

std::int64_t block_capacity(const DispatchOptions& o, int R, int max_local, int K, std::int64_t max_tokens) {
  switch (o.model) {
    case DispatchModel::deepep_ll: return max_tokens;
    case DispatchModel::pplx: return max_tokens * R;
    case DispatchModel::deepep_ht: return -1;
    case DispatchModel::mori:
    case DispatchModel::pairs: return buffer_rows(o, R, max_local, K, max_tokens);
  }
  return -1;
}

// Receive buffers: MORI's flat [MaxNumTokensToRecv, H] with rows [0, total_recv) valid
// (python/mori/ops/dispatch_combine.py); DeepEP HT's exactly sized recv_x ordered by source rank
// (csrc/deep_ep.cpp, intranode dispatch); DeepEP LL's and pplx's expert-major
// [E_local, max_tokens * R, H] with a count per local expert (csrc/kernels/internode_ll.cu,
// pplx-kernels all_to_all); the seed's flat per-(token, expert) list.
Dispatch dispatch(const ExpertMap& map, int K, const std::vector<SourceRouting>& sources, const DispatchOptions& o) {
  const int R = map.num_ranks;
  if (static_cast<int>(sources.size()) != R) throw Error("dispatch: expected " + std::to_string(R) + " source ranks");
  Dispatch out;
  out.options = o;
  out.top_k = K;
  out.max_tokens = o.max_tokens_per_rank > 0 ? o.max_tokens_per_rank : default_max_tokens(sources);
  out.ranks.resize(R);
  out.slot_dest.resize(R);
  out.slot_row.resize(R);
  out.slot_first.resize(R);

  // Arrival in canonical order: source rank, token, slot.
  std::vector<std::vector<PendingRow>> pending(R);
  std::vector<RowDest> rows(K);
  for (int s = 0; s < R; ++s) {
    const auto& src = sources[s];
    out.slot_dest[s].assign(src.num_tokens * K, -1);
    out.slot_row[s].assign(src.num_tokens * K, -1);
    out.slot_first[s].assign(src.num_tokens * K, 0);
    for (std::int64_t t = 0; t < src.num_tokens; ++t) {
      const int n = route_token(map, o, K, &src.ids[t * K], rows.data());
      for (int i = 0; i < n; ++i) pending[rows[i].dest].push_back({s, static_cast<std::int32_t>(t), rows[i]});
    }
  }

  const bool em = expert_major(o.model);
  const bool by_source = blocks_by_source(o.model);
  const std::int64_t cap = block_capacity(o, R, map.max_local, K, out.max_tokens);
  for (int d = 0; d < R; ++d) {
    auto& p = pending[d];
    RecvBuffer& b = out.ranks[d];
    b.buffer_rows = buffer_rows(o, R, map.max_local, K, out.max_tokens);
    // Blocks in canonical order (a stable counting sort of the arrival order by expert, then
    // source): what each library keeps together. Only the order inside a block is left to
    // arrival (atomics or channels), and in deepep-ll also the order of a local expert's source
    // blocks (each source's (begin, count) comes from an atomic on packed_recv_count).
    const int num_e = em ? map.num_local(d) : 1, num_s = by_source ? R : 1;
    auto block_of = [&](const PendingRow& r) {
      return (em ? map.local_of[r.d.target] : 0) * num_s + (by_source ? r.src_rank : 0);
    };
    std::vector<std::int64_t> block_begin(static_cast<std::size_t>(num_e) * num_s + 1, 0);
    for (const auto& r : p) ++block_begin[block_of(r) + 1];
    for (std::size_t g = 1; g < block_begin.size(); ++g) block_begin[g] += block_begin[g - 1];
    std::vector<std::int64_t> order(p.size()), next(block_begin.begin(), block_begin.end() - 1);
    for (std::size_t i = 0; i < p.size(); ++i) order[next[block_of(p[i])]++] = static_cast<std::int64_t>(i);
    if (o.shuffle)
      for (std::size_t g = 0; g + 1 < block_begin.size(); ++g)
        shuffle_range(order, block_begin[g], block_begin[g + 1], stream_of(o.shuffle_seed, {static_cast<std::uint64_t>(d), g}));

    std::vector<std::int64_t> kept;
    kept.reserve(p.size());
    if (em) b.expert_begin.assign(num_e + 1, 0);
    if (o.model == DispatchModel::deepep_ll) b.layout_range.assign(static_cast<std::size_t>(num_e) * R, 0);
    std::vector<std::int64_t> src_order(num_s);
    for (int e = 0; e < num_e; ++e) {
      std::iota(src_order.begin(), src_order.end(), 0);
      if (o.shuffle && o.model == DispatchModel::deepep_ll)
        shuffle_range(src_order, 0, num_s, stream_of(o.shuffle_seed, {static_cast<std::uint64_t>(d), static_cast<std::uint64_t>(e), kSourceOrderKey}));
      for (const std::int64_t src : src_order) {
        const std::int64_t g = static_cast<std::int64_t>(e) * num_s + src;
        const std::int64_t n = block_begin[g + 1] - block_begin[g];
        const std::int64_t limit = cap >= 0 ? cap : n;
        const std::int64_t keep = std::min(n, limit);
        if (n > keep && o.overflow == Overflow::error)
          throw Error("rank " + std::to_string(d) + " receive buffer overflow: " + std::to_string(n) + " rows for " +
                      std::to_string(limit) + " slots" + (em ? " of local expert " + std::to_string(e) : "") +
                      (o.model == DispatchModel::deepep_ll ? " from source rank " + std::to_string(src) : "") +
                      " (raise max tokens per rank, or --overflow drop to model the silent drop)");
        b.overflow += n - keep;
        if (!b.layout_range.empty())
          b.layout_range[static_cast<std::size_t>(e) * R + src] =
              pack_layout_range(static_cast<std::int64_t>(kept.size()) - b.expert_begin[e], keep);
        for (std::int64_t i = 0; i < keep; ++i) kept.push_back(order[block_begin[g] + i]);
      }
      if (em) b.expert_begin[e + 1] = static_cast<std::int64_t>(kept.size());
    }
    if (b.buffer_rows < 0) b.buffer_rows = static_cast<std::int64_t>(kept.size());

    const std::int64_t N = static_cast<std::int64_t>(kept.size());
    b.total_recv = N;
    b.src_rank.resize(N);
    b.src_token.resize(N);
    b.slot.resize(N);
    b.target.resize(N);
    b.src_pos.resize(N);
    b.ids.resize(N * K);
    b.weights.resize(N * K);
    const SrcPosEncoding enc = rank_dedup(o.model) ? o.encoding : SrcPosEncoding::pair;
    for (std::int64_t i = 0; i < N; ++i) {
      const PendingRow& r = p[kept[i]];
      const auto& src = sources[r.src_rank];
      b.src_rank[i] = r.src_rank;
      b.src_token[i] = r.src_token;
      b.slot[i] = r.d.slot;
      b.target[i] = r.d.target;
      b.src_pos[i] = encode_src_pos(enc, R, out.max_tokens, K, r.src_rank, r.src_token, r.d.slot);
      deliver_row(o.model, map, K, &src.ids[r.src_token * K], &src.weights[r.src_token * K], r.d, &b.ids[i * K],
                  &b.weights[i * K]);
      const std::int64_t at = static_cast<std::int64_t>(r.src_token) * K + r.d.slot;
      out.slot_dest[r.src_rank][at] = d;
      out.slot_row[r.src_rank][at] = static_cast<std::int32_t>(i);
      out.slot_first[r.src_rank][at] = 1;
    }
  }

  // Rank-dedup rows also carry the later slots that go to the same rank.
  if (rank_dedup(o.model)) {
    for (int s = 0; s < R; ++s) {
      const auto& src = sources[s];
      for (std::int64_t t = 0; t < src.num_tokens; ++t) {
        const int n = route_token(map, o, K, &src.ids[t * K], rows.data());
        for (int k = 0; k < K; ++k) {
          const int id = src.ids[t * K + k];
          if (out.slot_first[s][t * K + k]) continue;
          const int dest = id >= 0 ? map.rank_of[id] : (o.model == DispatchModel::mori && o.negative == NegativeIds::rank0 ? 0 : -1);
          if (dest < 0) continue;
          for (int i = 0; i < n; ++i)
            if (rows[i].dest == dest) {
              const std::int64_t first = t * K + rows[i].slot;
              out.slot_dest[s][t * K + k] = dest;
              out.slot_row[s][t * K + k] = out.slot_row[s][first];
            }
        }
      }
    }
  }
  return out;
}

}  // namespace moesim::sim
