// Readable text and JSON renderings of a diff Result.
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "diff.hpp"

namespace moesim::diff {

namespace {
std::string num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string shape(const std::vector<std::uint64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

std::string where(const Location& l) {
  std::string s = shape(l.index);
  if (l.layer >= 0) s += " layer " + std::to_string(l.layer);
  if (l.rank >= 0) s += " rank " + std::to_string(l.rank);
  if (l.token >= 0) s += " token " + std::to_string(l.token);
  if (l.row >= 0) s += " row " + std::to_string(l.row);
  if (l.src_rank >= 0) s += " (from rank " + std::to_string(l.src_rank) + " token " + std::to_string(l.src_token) + ")";
  if (l.slot >= 0) s += " slot " + std::to_string(l.slot);
  if (l.expert >= 0) s += " expert " + std::to_string(l.expert);
  if (l.column >= 0) s += " column " + std::to_string(l.column);
  return s;
}

std::string dtype(const DatasetResult& d) { return d.dtype_a == d.dtype_b ? d.dtype_a : d.dtype_a + "/" + d.dtype_b; }

std::string criterion(const DatasetResult& d, const Options& o) {
  if (d.criterion == "delta") return "|a-b| > " + num(*o.delta);
  if (d.criterion == "relative") return "|a-b|/|a| > " + num(*o.relative);
  if (d.criterion == "exact") return "exact";
  if (d.criterion == "bound") return "rounding bound";
  return "atol " + num(d.tolerance.atol) + " rtol " + num(d.tolerance.rtol);
}

template <class T>
void list(std::ostream& out, const std::string& title, const std::vector<T>& items, size_t limit,
          std::string (*text)(const T&)) {
  if (items.empty()) return;
  out << title << " (" << items.size() << "):\n";
  for (size_t i = 0; i < items.size() && i < limit; ++i) out << "  " << text(items[i]) << "\n";
  if (items.size() > limit) out << "  ... and " << items.size() - limit << " more\n";
}
}  // namespace

std::string format_text(const Result& r, const Options& o) {
  std::ostringstream out;
  auto fmt = [](const std::string& f) { return f.empty() ? std::string() : " (" + f + ")"; };
  out << "moesim diff " << r.file_a << fmt(r.format_a) << " vs " << r.file_b << fmt(r.format_b) << "\n";
  const auto div = r.divergences();
  if (r.bound_used()) out << "verdict: " << r.verdict() << "\n";
  if (!r.bound_note.empty()) out << "note: " << r.bound_note << "\n";
  if (!r.transport_note.empty()) out << "note: " << r.transport_note << "\n";
  if (div.empty()) {
    out << "no divergence\n";
  } else {
    const auto& f = div.front();
    out << "first divergence:" << (f.layer >= 0 ? " layer " + std::to_string(f.layer) + "," : "") << " stage "
        << name(f.stage) << ": " << f.path << ": " << f.what << "\n";
    // A golden file holds only expert_out and final_out; the run's own intermediate stages
    // (expert_rows, combine_out) have nothing to be compared with there.
    if ((r.format_a == "moesim-golden") != (r.format_b == "moesim-golden") && f.stage == Stage::final_)
      out << "note: a golden file has no per-row expert or combine stages; diff this run against a run of the "
             "correct pairing to see which of those diverges first\n";
  }
  out << "datasets: " << r.datasets.size() << " compared, " << r.failed_datasets() << " differ, "
      << r.incomparable.size() << " not comparable; only in first: " << r.only_a.size()
      << ", only in second: " << r.only_b.size()
      << (r.structure_counts ? "" : " (not counted: the files are of different formats)") << "\n";
  {  // One word per pipeline stage present, in pipeline order.
    std::map<Stage, std::pair<int, int>> per_stage;  // stage -> (failing, compared)
    for (const auto& d : r.datasets) {
      auto& c = per_stage[d.stage];
      c.first += d.failed();
      ++c.second;
    }
    out << "stages:";
    for (const auto& [stage, c] : per_stage)
      out << " " << name(stage) << (c.first ? " " + std::to_string(c.first) + "/" + std::to_string(c.second) + " differ" : " ok")
          << (stage == per_stage.rbegin()->first ? "" : ",");
    out << "\n";
  }
  if (!r.routing_note.empty()) out << "experts from " << r.routing_note << "\n";
  out << "\n";
  std::size_t quiet = 0;
  for (const auto& d : r.datasets) {
    const Metrics& m = d.metrics;
    if (!d.failed() && !o.verbose) {
      ++quiet;
      continue;
    }
    out << (d.failed() ? "FAIL " : "ok   ") << d.path << "  " << dtype(d) << " " << shape(d.dims) << ", stage "
        << name(d.stage) << (d.axes.empty() ? "" : ", axes " + d.axes) << ", " << criterion(d, o)
        << (d.rows_matched ? ", rows matched by source" : "") << "\n";
    if (m.differ == 0 && m.nan_a + m.nan_b + m.inf_a + m.inf_b == 0) continue;
    out << "     mismatched " << m.mismatched << " / " << m.elements << " (" << num(m.mismatch_percent())
        << "%), unequal " << m.differ;
    if (m.not_comparable) out << ", not comparable (a = 0) " << m.not_comparable;
    out << "\n     max abs " << num(m.max_abs) << " at " << where(d.max_abs_at) << "; mean abs " << num(m.mean_abs())
        << "\n     max rel " << num(m.max_rel) << " at " << where(d.max_rel_at) << "\n     ";
    if (d.criterion == "bound")
      out << "worst element used " << num(m.max_ratio) << " of the bound, at " << where(d.max_ratio_at) << "\n     ";
    if (m.max_ulp >= 0) out << "max ulp " << num(m.max_ulp) << "; ";
    out << "calc_diff " << num(m.calc_diff()) << "; cosine " << num(m.cosine()) << "; nan " << m.nan_a << "/"
        << m.nan_b << ", inf " << m.inf_a << "/" << m.inf_b << "\n";
    if (d.failed()) out << "     first mismatch at " << where(d.first_mismatch_at) << "\n";
  }
  if (quiet) out << quiet << " datasets within tolerance (-v lists them)\n";
  list<Divergence>(out, "\ndivergences in pipeline order", div, 20, [](const Divergence& d) {
    return (d.layer >= 0 ? "layer " + std::to_string(d.layer) + " " : std::string()) + std::string(name(d.stage)) +
           ": " + d.path + ": " + d.what;
  });
  list<AttributeResult>(out, "\nattributes that differ", r.attributes, 20, [](const AttributeResult& a) {
    return a.object + " " + a.name + ": '" + a.value_a + "' vs '" + a.value_b + "'" + (a.numeric ? "" : " (note)");
  });
  list<std::string>(out, "\nonly in first", r.only_a, 20, [](const std::string& s) { return s; });
  list<std::string>(out, "\nonly in second", r.only_b, 20, [](const std::string& s) { return s; });
  if (!r.per_rank.empty()) {
    out << "\nmismatches per rank:\n";
    for (const auto& [k, t] : r.per_rank)
      out << "  rank " << k << ": " << t.mismatched << ", max abs " << num(t.max_abs) << " (" << t.worst_dataset << ")\n";
  }
  if (!r.per_expert.empty()) {
    out << "\nmismatches per expert:\n";
    for (const auto& [k, t] : r.per_expert)
      out << "  expert " << k << ": " << t.mismatched << ", max abs " << num(t.max_abs) << "\n";
  }
  const auto worst = r.worst_tokens(o.worst_tokens);
  if (!worst.empty()) {
    out << "\nworst tokens:\n";
    for (const auto& [k, t] : worst)
      out << "  layer " << k.layer << " rank " << k.rank << " token " << k.token << ": max abs " << num(t.max_abs)
          << ", " << t.mismatched << " mismatched (" << t.worst_dataset << ")\n";
  }
  std::uint64_t found = 0;
  for (const auto& d : r.datasets) found += d.metrics.mismatched;
  out << "\n" << found << " differences found\n";
  return out.str();
}

namespace {
// A minimal JSON writer: objects and arrays with automatic commas.
class Json {
 public:
  Json& open(char c) { sep(); s_ += c; first_ = true; return *this; }
  Json& close(char c) { s_ += c; first_ = false; return *this; }
  Json& key(const std::string& k) { sep(); str(k); s_ += ':'; first_ = true; return *this; }
  Json& value(const std::string& v) { sep(); str(v); return *this; }
  Json& value(const char* v) { return value(std::string(v)); }
  Json& value(double v) {
    sep();
    if (!std::isfinite(v)) { s_ += "null"; return *this; }  // JSON has no inf or nan
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    s_ += buf;
    return *this;
  }
  Json& value(std::int64_t v) { sep(); s_ += std::to_string(v); return *this; }
  Json& value(std::uint64_t v) { sep(); s_ += std::to_string(v); return *this; }
  Json& value(int v) { return value(static_cast<std::int64_t>(v)); }
  Json& value(bool v) { sep(); s_ += v ? "true" : "false"; return *this; }
  template <class T>
  Json& field(const std::string& k, const T& v) { key(k); return value(v); }
  std::string str() const { return s_ + "\n"; }

 private:
  void sep() {
    if (!first_) s_ += ',';
    first_ = false;
  }
  void str(const std::string& v) {
    s_ += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') s_ += '\\', s_ += c;
      else if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        s_ += buf;
      } else s_ += c;
    }
    s_ += '"';
  }
  std::string s_;
  bool first_ = true;
};

void location(Json& j, const std::string& k, const Location& l) {
  j.key(k).open('{');
  j.key("index").open('[');
  for (auto i : l.index) j.value(i);
  j.close(']');
  j.field("layer", l.layer).field("rank", l.rank).field("token", l.token).field("row", l.row);
  j.field("src_rank", l.src_rank).field("src_token", l.src_token).field("slot", l.slot).field("expert", l.expert);
  j.field("column", l.column).close('}');
}

void tallies(Json& j, const std::string& k, const std::string& id, const std::map<int, Tally>& m) {
  j.key(k).open('[');
  for (const auto& [key, t] : m)
    j.open('{').field(id, key).field("mismatched", t.mismatched).field("max_abs", t.max_abs)
        .field("worst_dataset", t.worst_dataset).close('}');
  j.close(']');
}
}  // namespace

std::string format_json(const Result& r, const Options& o) {
  Json j;
  j.open('{').field("file_a", r.file_a).field("file_b", r.file_b).field("format_a", r.format_a)
      .field("format_b", r.format_b).field("different", r.different()).field("structure_counts", r.structure_counts)
      .field("bound", r.bound_label).field("verdict", r.verdict()).field("bound_note", r.bound_note)
      .field("transport_note", r.transport_note);
  const auto div = r.divergences();
  j.key("divergences").open('[');
  for (const auto& d : div)
    j.open('{').field("path", d.path).field("layer", d.layer).field("stage", std::string(name(d.stage)))
        .field("what", d.what).close('}');
  j.close(']');
  j.key("datasets").open('[');
  for (const auto& d : r.datasets) {
    const Metrics& m = d.metrics;
    j.open('{').field("path", d.path).key("dims").open('[');
    for (auto x : d.dims) j.value(x);
    j.close(']').field("dtype_a", d.dtype_a).field("dtype_b", d.dtype_b).field("stage", std::string(name(d.stage)))
        .field("layer", d.layer).field("rank", d.rank).field("axes", d.axes).field("criterion", d.criterion).field("rows_matched", d.rows_matched)
        .field("atol", d.tolerance.atol).field("rtol", d.tolerance.rtol).field("max_ratio", d.metrics.max_ratio).field("failed", d.failed())
        .field("elements", m.elements).field("mismatched", m.mismatched).field("mismatch_percent", m.mismatch_percent())
        .field("unequal", m.differ).field("not_comparable", m.not_comparable).field("max_abs", m.max_abs)
        .field("mean_abs", m.mean_abs()).field("max_rel", m.max_rel).field("max_ulp", m.max_ulp)
        .field("calc_diff", m.calc_diff()).field("cosine", m.cosine()).field("nan_a", m.nan_a).field("nan_b", m.nan_b)
        .field("inf_a", m.inf_a).field("inf_b", m.inf_b).field("nonfinite_mismatch", m.nonfinite_mismatch);
    location(j, "max_abs_at", d.max_abs_at);
    location(j, "max_rel_at", d.max_rel_at);
    if (d.failed()) location(j, "first_mismatch_at", d.first_mismatch_at);
    j.close('}');
  }
  j.close(']');
  j.key("attributes").open('[');
  for (const auto& a : r.attributes)
    j.open('{').field("object", a.object).field("name", a.name).field("a", a.value_a).field("b", a.value_b)
        .field("counted", a.numeric).close('}');
  j.close(']');
  j.key("transported").open('[');
  for (const auto& t : r.transported)
    j.open('{').field("file", t.file).field("path", t.path).field("stage", std::string(name(t.stage)))
        .field("layer", t.layer).field("rank", t.rank).field("row", t.row).field("count", t.count)
        .field("src_rank", t.src_rank).field("src_token", t.src_token).field("slot", t.slot).field("got", t.got)
        .field("want", t.want).field("what", t.what).close('}');
  j.close(']');
  j.key("incomparable").open('[');
  for (const auto& i : r.incomparable) j.open('{').field("path", i.path).field("why", i.why).close('}');
  j.close(']');
  j.key("only_a").open('[');
  for (const auto& s : r.only_a) j.value(s);
  j.close(']').key("only_b").open('[');
  for (const auto& s : r.only_b) j.value(s);
  j.close(']');
  tallies(j, "per_rank", "rank", r.per_rank);
  tallies(j, "per_expert", "expert", r.per_expert);
  j.key("worst_tokens").open('[');
  for (const auto& [k, t] : r.worst_tokens(o.worst_tokens))
    j.open('{').field("layer", k.layer).field("rank", k.rank).field("token", k.token).field("mismatched", t.mismatched)
        .field("max_abs", t.max_abs).field("worst_dataset", t.worst_dataset).close('}');
  j.close(']').close('}');
  return j.str();
}

}  // namespace moesim::diff
