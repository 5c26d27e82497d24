#include "transport_check.hpp"

#include <cstdio>
#include <cstring>
#include <optional>

#include "capture_check.hpp"
#include "error.hpp"
#include "expert_side.hpp"
#include "run_file.hpp"
#include "trace_io.hpp"

namespace moesim::sim {

namespace {

constexpr const char* kCopies = ": transported values must be equal bits, this is not rounding";
constexpr const char* kRows = ": the rows a dispatch delivers follow from the routing, this is not rounding";

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

std::string source_text(const RowMismatch& m) {
  return "source rank " + std::to_string(m.src_rank) + ", token " + std::to_string(m.src_token) +
         (m.slot >= 0 ? ", slot " + std::to_string(m.slot) : "");
}

std::string count_text(std::int64_t n, const char* what) {
  return n > 1 ? " (" + std::to_string(n) + " " + what + " of this rank)" : "";
}

diff::TransportedMismatch entry(const std::string& file, const std::string& path, int layer, int rank,
                                const RowMismatch& m, std::int64_t count, std::string what) {
  diff::TransportedMismatch t;
  t.file = file;
  t.path = path;
  t.what = std::move(what);
  t.layer = layer;
  t.rank = rank;
  t.row = m.row;
  t.count = count;
  t.src_rank = m.src_rank;
  t.src_token = m.src_token;
  t.slot = m.slot;
  t.got = m.got;
  t.want = m.want;
  return t;
}

// One entry per kind of finding on one rank: the first row of each kind, with the count.
void add_findings(const std::string& file, int layer, const CaptureCheck& ck, diff::Result& r) {
  const std::string dp = rank_path(layer, ck.rank) + "/dispatch";
  if (ck.undecodable > 0) {
    RowMismatch m;
    m.field = "src_token_pos";
    r.transported.push_back(entry(file, dp + "/src_token_pos", layer, ck.rank, m, ck.undecodable,
                                  std::to_string(ck.undecodable) + " rows whose src_token_pos names no source token" + kRows));
  }
  if (!ck.x_rows.empty()) {
    const RowMismatch& m = ck.x_rows.front();
    r.transported.push_back(entry(
        file, dp + "/" + m.field, layer, ck.rank, m, ck.x_mismatches,
        "row " + std::to_string(m.row) + " (" + source_text(m) + "): received " +
            (m.field == "recv_x" ? "token value " : "scale ") + num(m.got) + " at column " + std::to_string(m.column) +
            " differs from the source's " + num(m.want) + kCopies + count_text(ck.x_mismatches, "rows")));
  }
  for (const ModelFinding& f : ck.models) {
    bool ids = false, weights = false, extra = false, missing = false;
    for (const RowMismatch& m : f.mismatches) {
      const std::string row = "row " + std::to_string(m.row) + " (" + source_text(m) + ")";
      if (m.field == "recv_weights" && !weights) {
        weights = true;
        r.transported.push_back(entry(file, dp + "/recv_weights", layer, ck.rank, m, f.id_mismatches,
                                      row + ": received weight " + num(m.got) + " differs from the source's " +
                                          num(m.want) + " (as " + f.model + " delivers it)" + kCopies +
                                          count_text(f.id_mismatches, "rows with ids or weights off")));
      } else if (m.field == "recv_topk_ids" && !ids) {
        ids = true;
        r.transported.push_back(entry(file, dp + "/recv_topk_ids", layer, ck.rank, m, f.id_mismatches,
                                      row + ": received id " + num(m.got) + " differs from the source's " + num(m.want) +
                                          " (as " + f.model + " delivers it)" + kCopies +
                                          count_text(f.id_mismatches, "rows with ids or weights off")));
      } else if (m.field == "extra" && !extra) {
        extra = true;
        r.transported.push_back(entry(file, dp + "/src_token_pos", layer, ck.rank, m, f.duplicate_rows,
                                      row + ": a row " + f.model + " does not deliver for this routing (a duplicate, or "
                                                                     "sent for an expert the source did not pick)" +
                                          kRows + count_text(f.duplicate_rows, "extra rows")));
      } else if (m.field == "missing" && !missing) {
        missing = true;
        r.transported.push_back(entry(file, dp + "/src_token_pos", layer, ck.rank, m, f.missing_rows,
                                      "no row from " + source_text(m) + ", which " + f.model +
                                          " delivers for this routing (dropped)" + kRows +
                                          count_text(f.missing_rows, "missing rows")));
      }
    }
  }
}

// MORI's combine weights follow from the routing through the dispatch: each destination returns
// the weights row it received.
void check_combine_weights(const h5::File& f, const Trace& one, const ExpertMap& map, const DispatchOptions& base,
                           diff::Result& r) {
  const TraceConfig& c = one.config;
  const int K = c.top_k, index = one.layers[0].index;
  DispatchOptions o = base;
  o.overflow = Overflow::drop;
  o.max_total_recv = 0;
  const auto sources = layer_sources(one, 0, map, SimOptions{});
  const Dispatch d = dispatch(map, K, sources, o);
  for (int rk = 0; rk < c.num_ranks; ++rk) {
    const std::string ds = rank_path(index, rk) + "/combine_weights";
    if (!f.exists(ds)) continue;
    const auto T = static_cast<std::uint64_t>(sources[rk].num_tokens);
    if (f.info(ds).dims != std::vector<std::uint64_t>{T, static_cast<std::uint64_t>(K)})
      f.fail(ds, "shape differs from [" + std::to_string(T) + ", " + std::to_string(K) + "]");
    const std::vector<float> got = f.read<float>(ds);
    const std::vector<float> want = mori_combine_weights(map, sources[rk], rk, d, false);
    std::int64_t bad = 0;
    RowMismatch first;
    for (std::uint64_t t = 0; t < T; ++t)
      for (int k = 0; k < K; ++k) {
        const std::size_t i = t * K + k;
        if (std::memcmp(&got[i], &want[i], sizeof(float)) == 0) continue;
        if (bad++ == 0) first = {"combine_weights", static_cast<std::int64_t>(t), rk, static_cast<std::int64_t>(t), k, -1, got[i], want[i]};
      }
    if (bad == 0) continue;
    diff::TransportedMismatch m = entry(f.path(), ds, index, rk, first, bad,
                                        "token " + std::to_string(first.src_token) + ", slot " + std::to_string(first.slot) +
                                            ": combine weight " + num(first.got) + " differs from the " + num(first.want) +
                                            " MORI's combine returns for this routing (the weights its destination ranks "
                                            "received, added in first-slot order)" + kCopies +
                                            (bad > 1 ? " (" + std::to_string(bad) + " weights of this rank)" : ""));
    m.stage = diff::Stage::combine;
    r.transported.push_back(std::move(m));
  }
}

}  // namespace

std::string check_transported(const h5::File& f, const Trace& routing, diff::Result& r, const h5::File* routing_file) {
  const std::string format = f.has_attr("/", "format") ? f.attr_string("/", "format") : "";
  if (format != kRunFormat || f.has_attr("/", "routing_only") || !f.exists("/layers")) return "";
  if (!f.has_attr("/", "dispatch")) return f.path() + " does not record its dispatch model";
  DispatchModel model = DispatchModel::mori;
  try {
    model = parse_dispatch(f.attr_string("/", "dispatch"));
  } catch (const Error& e) {
    f.fail("/", std::string("attribute 'dispatch': ") + e.what());
  }
  if (f.has_attr("/", "ids") && f.attr_string("/", "ids") != "physical")
    return f.path() + " ran on logical ids (which replica each row went to is not recorded)";
  const bool mori_weights = model == DispatchModel::mori && f.has_attr("/", "combine") &&
                            f.attr_string("/", "combine") == name(CombineModel::rank_sum);
  const TraceConfig& c = routing.config;
  const ExpertMap map = make_expert_map(c);
  for (std::size_t pos = 0; pos < routing.layers.size(); ++pos) {
    const Layer& layer = routing.layers[pos];
    if (!f.exists(layer_path(layer.index))) continue;
    Trace one;  // this layer's routing and tokens; neither its expert weights nor its captures
    one.config = c;
    one.path = routing.path;
    one.layers.resize(1);
    one.layers[0].index = layer.index;
    for (const RankInput& in : layer.ranks) {
      RankInput& copy = one.layers[0].ranks.emplace_back();
      copy.num_tokens = in.num_tokens;
      copy.topk_ids = in.topk_ids;
      copy.topk_weights = in.topk_weights;
      copy.x = in.x;
      copy.x_scales = in.x_scales;
    }
    bool tokens = true;  // every rank's tokens are in memory
    for (const RankInput& in : layer.ranks) tokens = tokens && (in.num_tokens == 0 || !in.x.empty());
    // diff reads the routing without tensors: this layer's tokens now, one layer in memory.
    if (!tokens && routing_file) {
      read_layer_tokens(*routing_file, routing, static_cast<int>(pos), one.layers[0]);
      tokens = true;
    }
    std::int64_t max_tokens = -1;
    for (int rk = 0; rk < c.num_ranks; ++rk) {
      RankInput& in = one.layers[0].ranks[rk];
      const std::string dp = rank_path(layer.index, rk) + "/dispatch";
      if (!f.exists(dp)) continue;
      if (!f.has_attr(dp, "max_tokens"))
        return f.path() + " does not record its dispatch capacity (" + dp + " has no attribute max_tokens)";
      const std::int64_t m = f.attr_int(dp, "max_tokens");
      if (m < 1 || (max_tokens >= 0 && m != max_tokens)) f.fail(dp, "attribute max_tokens " + std::to_string(m) + " is not the layer's capacity");
      max_tokens = m;
      read_receive_buffers(f, c, dp, in.num_tokens, in.captured, tokens);
      if (in.captured.total_recv < 0) f.fail(dp, "no attribute total_recv");
    }
    if (max_tokens < 0) continue;  // no dispatch recorded for this layer
    DispatchOptions base;
    base.model = model;
    base.max_tokens_per_rank = max_tokens;
    for (const CaptureCheck& ck : check_captures(one, 0, map, base, true)) {
      if (!ck.not_compared.empty()) return f.path() + ": " + ck.not_compared;
      add_findings(f.path(), layer.index, ck, r);
    }
    if (mori_weights) check_combine_weights(f, one, map, base, r);
  }
  return "";
}

diff::Result compare_files(const std::string& a, const std::string& b, const diff::Options& o) {
  diff::Result r = diff::run(a, b, o);
  const h5::File fa = h5::File::open_read(a), fb = h5::File::open_read(b);
  auto records = [](const h5::File& f) {
    return f.has_attr("/", "format") && f.attr_string("/", "format") == kRunFormat && !f.has_attr("/", "routing_only");
  };
  if (!records(fa) && !records(fb)) return r;
  const char* lead = "transported values (received rows, combine weights) not checked: ";
  if (!o.routing && r.routing_file.empty()) {
    r.transport_note = std::string(lead) + "no routing trace (the trace the files name is gone; give --trace)";
    return r;
  }
  if (!r.bound_used()) {
    r.transport_note = std::string(lead) + "the files are judged by tolerances, not by the rounding bound's verdict";
    return r;
  }
  const Trace* routing = o.routing;
  std::optional<Trace> read;
  if (!routing) {
    ReadOptions ro;
    ro.tensors = ro.captured = ro.weights = false;  // tokens are read one layer at a time
    try {
      read = read_trace(r.routing_file, ro);
    } catch (const Error& e) {
      r.transport_note = std::string(lead) + "the trace is not readable (" + e.what() + ")";
      return r;
    }
    routing = &*read;
  }
  std::optional<h5::File> tokens;
  if (read) tokens = h5::File::open_read(r.routing_file);
  std::vector<diff::TransportedMismatch> found;
  for (const h5::File* f : {&fa, &fb}) {
    diff::Result one;
    const std::string why = check_transported(*f, *routing, one, tokens ? &*tokens : nullptr);
    if (!why.empty()) r.transport_note += (r.transport_note.empty() ? lead : "; ") + why;
    for (auto& t : one.transported)
      if (diff::selected(o, t.path)) found.push_back(std::move(t));
    if (a == b) break;
  }
  r.transported = std::move(found);
  return r;
}

}  // namespace moesim::sim
