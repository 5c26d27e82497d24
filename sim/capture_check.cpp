#include "capture_check.hpp"

#include <algorithm>
#include <cstring>
#include <map>

#include "route.hpp"

namespace moesim::sim {

namespace {

constexpr std::size_t kEvidence = 4;

void note(std::vector<std::string>& ev, const std::string& line) {
  if (ev.size() < kEvidence) ev.push_back(line);
}

bool same_bits(const float* a, const float* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

struct Variant {
  const char* label;
  DispatchModel model;
  NegativeIds negative;
};
constexpr Variant kVariants[] = {
    {"mori", DispatchModel::mori, NegativeIds::skip},
    {"mori (old: -1 to rank 0)", DispatchModel::mori, NegativeIds::rank0},
    {"deepep-ht", DispatchModel::deepep_ht, NegativeIds::skip},
    {"deepep-ll", DispatchModel::deepep_ll, NegativeIds::skip},
    {"pplx", DispatchModel::pplx, NegativeIds::skip},
    {"pairs", DispatchModel::pairs, NegativeIds::skip},
};

std::string src_text(int r, std::int64_t t) { return "(rank " + std::to_string(r) + ", token " + std::to_string(t) + ")"; }

}  // namespace

bool ModelFinding::consistent() const { return duplicate_rows == 0 && missing_rows == 0 && id_mismatches == 0; }

IdRange id_range(const Captured& cap, std::int64_t rows, int K, const ExpertMap& map, int rank) {
  IdRange out;
  if (cap.recv_topk_ids.empty() || rows <= 0) return out;
  rows = std::min(rows, cap.rows);
  for (std::int64_t i = 0; i < rows * K; ++i) {
    out.highest = std::max(out.highest, cap.recv_topk_ids[i]);
    out.minus_ones += cap.recv_topk_ids[i] < 0;
  }
  const auto& mine = map.experts_of_rank[rank];
  if (out.highest >= map.max_local) out.space = "global";
  else if (out.highest >= 0 && !mine.empty() && mine.back() >= map.max_local) out.space = "local";
  else out.space = "unknown";
  return out;
}

std::string CaptureCheck::id_space() const {
  if (valid_rows > 0 && global_id_rows == valid_rows) return "global";
  if (valid_rows > 0 && local_id_rows == valid_rows) return "local";
  if (global_id_rows + local_id_rows > 0) return "mixed";
  return range.space;
}

std::vector<std::string> CaptureCheck::consistent_models() const {
  std::vector<std::string> out;
  if (undecodable > 0 || x_mismatches > 0 || !not_compared.empty()) return out;
  for (const auto& m : models)
    if (m.consistent()) out.push_back(m.model);
  return out;
}

std::vector<CaptureCheck> check_captures(const Trace& trace, int layer_pos, const ExpertMap& map,
                                         const DispatchOptions& base, bool only_base) {
  const TraceConfig& c = trace.config;
  const Layer& layer = trace.layers.at(layer_pos);
  const int R = c.num_ranks, K = c.top_k, H = c.hidden, S = c.scales_per_token();
  std::vector<SourceRouting> sources(R);
  for (int r = 0; r < R; ++r) {
    sources[r].num_tokens = layer.ranks[r].num_tokens;
    sources[r].ids = layer.ranks[r].topk_ids;
    sources[r].weights = layer.ranks[r].topk_weights;
  }
  const std::int64_t max_tokens = base.max_tokens_per_rank > 0 ? base.max_tokens_per_rank : default_max_tokens(sources);

  // What each model delivers, keyed per destination by source token.
  struct Expected {
    std::map<std::pair<int, std::int64_t>, std::vector<std::int64_t>> rows_of;  // -> row indices in the buffer
    Dispatch d;
  };
  std::vector<Expected> expected;
  std::vector<Variant> variants;
  for (const auto& v : kVariants) {
    if (only_base && (v.model != base.model || v.negative != base.negative)) continue;
    variants.push_back(v);
    DispatchOptions o = base;
    o.model = v.model;
    o.negative = v.negative;
    o.overflow = Overflow::drop;
    o.shuffle = false;
    o.max_tokens_per_rank = max_tokens;
    expected.push_back({{}, dispatch(map, K, sources, o)});
  }

  bool sources_known = false;
  for (const auto& s : sources) sources_known = sources_known || s.num_tokens > 0;

  std::vector<CaptureCheck> out;
  for (int r = 0; r < R; ++r) {
    const Captured& cap = layer.ranks[r].captured;
    if (cap.rows == 0 && cap.total_recv < 0) continue;
    CaptureCheck ck;
    ck.rank = r;
    ck.rows = cap.rows;
    ck.total_recv = cap.total_recv;
    ck.buffer_rows = cap.buffer_rows;
    ck.valid_rows = cap.total_recv >= 0 ? cap.total_recv : cap.rows;
    ck.encoding = cap.src_pos_encoding.empty() ? "flat" : cap.src_pos_encoding;
    ck.has_positions = !cap.src_token_pos.empty();
    const bool have_ids = !cap.recv_topk_ids.empty(), have_w = !cap.recv_weights.empty();
    const bool have_x = !cap.recv_x.empty();
    ck.range = id_range(cap, ck.valid_rows, K, map, r);
    if (!sources_known) {
      ck.not_compared = "the trace holds no source routing (every rank has 0 tokens)";
      ck.has_positions = false;
    } else if (cap.total_recv < 0 && cap.src_token_pos.empty()) {
      // Rows held without total_recv: when they are a whole buffer their count says nothing.
      bool whole = cap.buffer_rows == cap.rows || R * max_tokens == cap.rows;
      for (const auto& e : expected) whole = whole || e.d.ranks[r].buffer_rows == cap.rows;
      if (whole) ck.not_compared = "the rows are a whole receive buffer, without total_recv or src_token_pos";
    }
    if (cap.total_recv >= 0 && cap.buffer_rows >= 0 && cap.total_recv > cap.buffer_rows)
      note(ck.evidence, "total_recv " + std::to_string(cap.total_recv) + " exceeds the buffer of " +
                            std::to_string(cap.buffer_rows) + " rows");

    // Decode every valid row's source, and check the row against it bit for bit.
    std::vector<std::pair<int, std::int64_t>> src_of(ck.valid_rows, {-1, -1});
    std::vector<int> slot_of(ck.valid_rows, -1);
    SrcPosEncoding enc = SrcPosEncoding::flat;
    try {
      enc = parse_src_pos_encoding(ck.encoding);
    } catch (...) {
      note(ck.evidence, "unknown src_token_pos encoding '" + ck.encoding + "'");
      ck.has_positions = false;
    }
    if (!ck.has_positions) note(ck.evidence, "no src_token_pos captured: rows are not matched to sources");
    for (std::int64_t i = 0; ck.has_positions && i < ck.valid_rows; ++i) {
      int sr, slot;
      std::int64_t t;
      if (!decode_src_pos(enc, R, max_tokens, K, cap.src_token_pos[i], sr, t, slot) || t >= layer.ranks[sr].num_tokens) {
        ++ck.undecodable;
        note(ck.evidence, "row " + std::to_string(i) + ": src_token_pos " + std::to_string(cap.src_token_pos[i]) +
                              " decodes to no source token (" + ck.encoding + " encoding)");
        continue;
      }
      src_of[i] = {sr, t};
      slot_of[i] = slot;
      const RankInput& in = layer.ranks[sr];
      auto row_differs = [&](const char* field, const float* got, const float* want, int n) {
        if (same_bits(got, want, n)) return false;
        int h = 0;
        while (std::memcmp(&got[h], &want[h], sizeof(float)) == 0) ++h;
        ++ck.x_mismatches;
        if (ck.x_rows.size() < kEvidence) ck.x_rows.push_back({field, i, sr, t, slot, h, got[h], want[h]});
        return true;
      };
      if (have_x && !in.x.empty() && row_differs("recv_x", &cap.recv_x[i * H], &in.x[t * H], H))
        note(ck.evidence, "row " + std::to_string(i) + ": recv_x differs from its decoded source " + src_text(sr, t));
      else if (!cap.recv_scales.empty() && !in.x_scales.empty() &&
               row_differs("recv_scales", &cap.recv_scales[i * S], &in.x_scales[t * S], S))
        note(ck.evidence, "row " + std::to_string(i) + ": recv_scales differ from its decoded source " + src_text(sr, t));
      if (have_ids) {
        const std::int32_t* got = &cap.recv_topk_ids[i * K];
        const std::int32_t* sid = &in.topk_ids[t * K];
        bool global = true, local = true;
        for (int k = 0; k < K; ++k) {
          global = global && got[k] == sid[k];
          const bool is_local = sid[k] >= 0 && map.rank_of[sid[k]] == r;
          local = local && got[k] == (is_local ? map.local_of[sid[k]] : -1);
        }
        ck.global_id_rows += global;
        ck.local_id_rows += local && !global;
      }
    }

    // Each model: the captured rows of every source against the rows it would deliver.
    for (std::size_t v = 0; v < expected.size() && sources_known; ++v) {
      ModelFinding f;
      f.model = variants[v].label;
      f.dispatch = variants[v].model;
      f.negative = variants[v].negative;
      const RecvBuffer& b = expected[v].d.ranks[r];
      f.expected_rows = b.total_recv;
      f.expected_buffer_rows = b.buffer_rows;
      f.overflow = b.overflow;
      if (!ck.not_compared.empty()) {  // what the model sends, for the record; nothing compared
        ck.models.push_back(std::move(f));
        continue;
      }
      if (ck.valid_rows != b.total_recv)
        note(f.evidence, "row count " + std::to_string(ck.valid_rows) + ", the model sends " +
                             std::to_string(b.total_recv));
      if (ck.has_positions) {
        std::map<std::pair<int, std::int64_t>, std::vector<std::int64_t>> left;
        for (std::int64_t j = 0; j < b.total_recv; ++j) left[{b.src_rank[j], b.src_token[j]}].push_back(j);
        for (std::int64_t i = 0; i < ck.valid_rows; ++i) {
          if (src_of[i].first < 0) continue;
          auto it = left.find(src_of[i]);
          if (it == left.end() || it->second.empty()) {
            ++f.duplicate_rows;
            if (f.mismatches.size() < kEvidence)
              f.mismatches.push_back({"extra", i, src_of[i].first, src_of[i].second, slot_of[i], -1, 0, 0});
            note(f.evidence, "row " + std::to_string(i) + ": an extra row for source " +
                                 src_text(src_of[i].first, src_of[i].second) + " (duplicate or not sent by this model)");
            continue;
          }
          // Prefer the expected row of the decoded slot, then any row with the same ids.
          auto& cand = it->second;
          std::size_t pick = cand.size();
          for (std::size_t c2 = 0; c2 < cand.size() && pick == cand.size(); ++c2)
            if (slot_of[i] >= 0 && b.slot[cand[c2]] == slot_of[i]) pick = c2;
          for (std::size_t c2 = 0; c2 < cand.size() && pick == cand.size(); ++c2)
            if (!have_ids || std::memcmp(&b.ids[cand[c2] * K], &cap.recv_topk_ids[i * K], K * sizeof(std::int32_t)) == 0)
              pick = c2;
          if (pick == cand.size()) pick = 0;
          const std::int64_t j = cand[pick];
          cand.erase(cand.begin() + static_cast<std::ptrdiff_t>(pick));
          const bool ids_ok = !have_ids || std::memcmp(&b.ids[j * K], &cap.recv_topk_ids[i * K], K * sizeof(std::int32_t)) == 0;
          const bool w_ok = !have_w || same_bits(&b.weights[j * K], &cap.recv_weights[i * K], K);
          if (!ids_ok || !w_ok) {
            ++f.id_mismatches;
            int k = 0;  // the first slot that differs
            if (!ids_ok)
              while (b.ids[j * K + k] == cap.recv_topk_ids[i * K + k]) ++k;
            else
              while (same_bits(&b.weights[j * K + k], &cap.recv_weights[i * K + k], 1)) ++k;
            if (f.mismatches.size() < kEvidence)
              f.mismatches.push_back(!ids_ok ? RowMismatch{"recv_topk_ids", i, src_of[i].first, src_of[i].second, k, -1,
                                                           static_cast<double>(cap.recv_topk_ids[i * K + k]),
                                                           static_cast<double>(b.ids[j * K + k])}
                                             : RowMismatch{"recv_weights", i, src_of[i].first, src_of[i].second, k, -1,
                                                           cap.recv_weights[i * K + k], b.weights[j * K + k]});
            note(f.evidence, "row " + std::to_string(i) + ": " + (!ids_ok ? "ids" : "weights") +
                                 " differ from what this model delivers for " + src_text(src_of[i].first, src_of[i].second));
          }
        }
        for (const auto& [key, rest] : left)
          for (std::size_t m = 0; m < rest.size(); ++m) {
            ++f.missing_rows;
            if (f.mismatches.size() < kEvidence)
              f.mismatches.push_back({"missing", -1, key.first, key.second, b.slot[rest[m]], -1, 0, 0});
            note(f.evidence, "missing a row for source " + src_text(key.first, key.second));
          }
      } else {
        // Without positions only the count can speak.
        if (ck.valid_rows > b.total_recv) f.duplicate_rows = ck.valid_rows - b.total_recv;
        if (ck.valid_rows < b.total_recv) f.missing_rows = b.total_recv - ck.valid_rows;
      }
      ck.models.push_back(std::move(f));
    }
    out.push_back(std::move(ck));
  }
  return out;
}

void print_capture_check(std::ostream& out, const CaptureCheck& ck) {
  out << "  rank " << ck.rank << ": " << ck.rows << " rows captured, total_recv "
      << (ck.total_recv >= 0 ? std::to_string(ck.total_recv) : "not captured") << ", buffer "
      << (ck.buffer_rows >= 0 ? std::to_string(ck.buffer_rows) + " rows" : "size not captured") << "; "
      << (ck.id_space() == "none" ? "no ids captured"
                                  : "ids " + ck.id_space() + (ck.global_id_rows + ck.local_id_rows > 0 ? "" : " (by their range)"))
      << "\n";
  for (const auto& e : ck.evidence) out << "    " << e << "\n";
  if (ck.undecodable) out << "    " << ck.undecodable << " rows with undecodable src_token_pos\n";
  if (ck.x_mismatches) out << "    " << ck.x_mismatches << " rows differ from their decoded source\n";
  if (!ck.not_compared.empty()) {
    out << "    dispatch models: not compared: " << ck.not_compared << "\n";
    return;
  }
  const auto ok = ck.consistent_models();
  out << "    consistent with: ";
  if (ok.empty()) out << "no dispatch model";
  for (std::size_t i = 0; i < ok.size(); ++i) out << (i ? ", " : "") << ok[i];
  out << "\n";
  for (const auto& m : ck.models) {
    if (m.consistent()) continue;
    out << "    not " << m.model << ": " << m.duplicate_rows << " extra, " << m.missing_rows << " missing, "
        << m.id_mismatches << " id/weight mismatches (expected " << m.expected_rows << " rows";
    if (ck.buffer_rows >= 0 && ck.buffer_rows != m.expected_buffer_rows)
      out << " in a buffer of " << m.expected_buffer_rows;
    out << ")";
    if (!m.evidence.empty()) out << "; " << m.evidence.front();
    out << "\n";
  }
}

}  // namespace moesim::sim
