#include "diff.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <type_traits>

#include "diff_attrib.hpp"
#include "diff_bound.hpp"
#include "diff_read.hpp"
#include "error.hpp"
#include "trace_io.hpp"

namespace moesim::diff {

std::string_view name(Stage s) {
  switch (s) {
    case Stage::input: return "input";
    case Stage::dispatch: return "dispatch";
    case Stage::expert: return "expert";
    case Stage::combine: return "combine";
    case Stage::final_: return "final";
    default: return "other";
  }
}

std::int64_t Result::failed_datasets() const {
  return std::count_if(datasets.begin(), datasets.end(), [](const auto& d) { return d.failed(); });
}

std::vector<Divergence> Result::divergences() const {
  std::vector<Divergence> out;
  for (const auto& d : datasets)
    if (d.failed())
      out.push_back({d.path,
                     std::to_string(d.metrics.mismatched) + " of " + std::to_string(d.metrics.elements) +
                         " elements mismatched",
                     d.stage, d.layer});
  for (const auto& t : transported) out.push_back({t.path, t.what, t.stage, t.layer});
  for (const auto& i : incomparable) out.push_back({i.path, i.why, i.stage, i.layer});
  for (const auto& a : attributes)
    if (a.numeric) out.push_back({a.object, "attribute " + a.name + ": " + a.value_a + " vs " + a.value_b, a.stage, a.layer});
  // Objects outside /layers (layer -1) come after every layer.
  auto key = [](const Divergence& d) {
    return std::make_tuple(d.layer < 0 ? INT32_MAX : d.layer, static_cast<int>(d.stage), d.path);
  };
  std::stable_sort(out.begin(), out.end(), [&](const auto& x, const auto& y) { return key(x) < key(y); });
  return out;
}

std::vector<std::pair<TokenKey, Tally>> Result::worst_tokens(int n) const {
  std::vector<std::pair<TokenKey, Tally>> v(per_token.begin(), per_token.end());
  // Worst first; ties keep token order, so the listing is deterministic.
  std::stable_sort(v.begin(), v.end(), [](const auto& x, const auto& y) {
    if (x.second.max_abs != y.second.max_abs) return x.second.max_abs > y.second.max_abs;
    return x.second.mismatched > y.second.mismatched;
  });
  if (static_cast<int>(v.size()) > n) v.resize(static_cast<size_t>(std::max(n, 0)));
  return v;
}

std::string Result::verdict() const {
  if (!bound_used()) return "";
  const std::string v = bound::verdict_text(bound_label, worst);
  if (!worst.within() || !different()) return v;
  // Outputs within the bound, yet something else differs (structure, statistics, attributes).
  const auto div = divergences();
  if (div.empty()) return v + "; but the files' structure differs";
  for (const auto& t : transported)  // a transported value says what differs itself
    if (t.path == div.front().path && t.what == div.front().what) return v + "; but " + t.path + ": " + t.what;
  return v + "; but " + div.front().path + " differs";
}

bound::Place place_of(const Location& l) {
  bound::Place p;
  p.layer = l.layer;
  p.rank = l.rank;  // a received row is named on the rank that holds it
  p.token = l.token;
  p.row = l.row;
  p.slot = l.slot;
  p.column = l.column;
  return p;
}

bool Result::different() const {
  return failed_datasets() > 0 || !incomparable.empty() || !transported.empty() ||
         std::any_of(attributes.begin(), attributes.end(), [](const auto& a) { return a.numeric; }) ||
         (structure_counts && (!only_a.empty() || !only_b.empty()));
}

namespace {

// Every object under `root`, path -> is a group, in name order.
void walk(const h5::File& f, const std::string& root, std::map<std::string, bool>& out) {
  for (const auto& c : f.children(root)) {
    const std::string p = (root == "/" ? "/" : root + "/") + c;
    const bool group = f.is_group(p);
    out[p] = group;
    if (group) walk(f, p, out);
  }
}

std::map<std::string, bool> objects(const h5::File& f, const std::vector<std::string>& only) {
  std::map<std::string, bool> out;
  if (only.empty()) {
    out["/"] = true;
    walk(f, "/", out);
    return out;
  }
  for (const auto& o : only) {
    if (!f.exists(o)) continue;
    const bool group = f.is_group(o);
    out[o] = group;
    if (group) walk(f, o, out);
  }
  return out;
}

// "string", "number" or "" (arrays, compounds: not compared).
std::string attribute_kind(const h5::File& f, const std::string& obj, const std::string& attr) {
  h5::Id a(H5Aopen_by_name(f.id(), obj.c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  h5::Id t(H5Aget_type(a.get()), H5Tclose);
  h5::Id s(H5Aget_space(a.get()), H5Sclose);
  if (a.get() < 0 || H5Sget_simple_extent_npoints(s.get()) != 1) return "";
  const auto cls = H5Tget_class(t.get());
  if (cls == H5T_STRING) return "string";
  if (cls == H5T_INTEGER || cls == H5T_FLOAT) return "number";
  return "";
}

std::string number_text(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void compare_attributes(const h5::File& a, const h5::File& b, const std::string& obj, Stage stage, Result& r) {
  static const std::set<std::string> descriptive{"stage", "axes", "dtype"};
  const auto names_b = b.attr_names(obj);
  const std::set<std::string> in_b(names_b.begin(), names_b.end());
  for (const auto& n : a.attr_names(obj)) {
    if (!in_b.count(n) || descriptive.count(n)) continue;
    const std::string ka = attribute_kind(a, obj, n), kb = attribute_kind(b, obj, n);
    if (ka.empty() || ka != kb) continue;
    AttributeResult ar{obj, n, "", "", ka == "number", stage, parse_path(obj).layer};
    if (ar.numeric) {
      const double va = a.attr_double(obj, n), vb = b.attr_double(obj, n);
      if (va == vb || (std::isnan(va) && std::isnan(vb))) continue;
      ar.value_a = number_text(va);
      ar.value_b = number_text(vb);
    } else {
      ar.value_a = a.attr_string(obj, n);
      ar.value_b = b.attr_string(obj, n);
      if (ar.value_a == ar.value_b) continue;
    }
    r.attributes.push_back(std::move(ar));
  }
}

std::string shape_text(const std::vector<std::uint64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

void tally(Tally& t, double abs, const std::string& ds) {
  ++t.mismatched;
  if (abs > t.max_abs || t.worst_dataset.empty()) {
    t.max_abs = std::max(t.max_abs, abs);
    t.worst_dataset = ds;
  }
}

// The source key of each received row: src_token_pos when both files have it (unique per row,
// slot included for per-(token, expert) layouts), else src_rank and src_token.
std::vector<std::int64_t> row_keys(const h5::File& f, const std::string& dir, std::uint64_t rows) {
  auto fits = [&](const std::string& p) { return f.exists(p) && !f.is_group(p) && f.info(p).dims == std::vector<std::uint64_t>{rows}; };
  auto ints = [&](const std::string& p) {
    const auto v = f.read_rows_as_double(p, 0, rows);
    return std::vector<std::int64_t>(v.begin(), v.end());
  };
  if (fits(dir + "/src_token_pos")) return ints(dir + "/src_token_pos");
  if (fits(dir + "/src_rank") && fits(dir + "/src_token")) {
    auto key = ints(dir + "/src_rank");
    const auto tok = ints(dir + "/src_token");
    for (std::size_t i = 0; i < key.size(); ++i) key[i] = (key[i] << 40) + tok[i];
    return key;
  }
  return {};
}

// For a row-indexed dataset whose rows both files hold in different orders: the row of the
// second file with the same source as each row of the first. Empty when the orders agree or
// the rows cannot be matched one to one (then the key datasets themselves show the difference).
std::vector<std::uint64_t> row_permutation(const h5::File& a, const h5::File& b, const std::string& ds,
                                           const std::vector<std::uint64_t>& dims, const std::string& axes) {
  if (dims.empty() || axes.rfind("row", 0) != 0 || (axes.size() > 3 && axes[3] != ',')) return {};
  const PathInfo p = parse_path(ds);
  if (p.rank_group.empty()) return {};
  const std::string here = ds.substr(0, ds.rfind('/'));
  for (const std::string& dir : {here, p.rank_group + "/dispatch", p.rank_group + "/captured"}) {
    const auto ka = row_keys(a, dir, dims[0]), kb = row_keys(b, dir, dims[0]);
    if (ka.empty() || kb.empty()) continue;
    if (ka == kb) return {};
    std::map<std::int64_t, std::uint64_t> where;
    for (std::uint64_t i = 0; i < kb.size(); ++i)
      if (!where.emplace(kb[i], i).second) return {};  // duplicate sources: no one-to-one match
    std::vector<std::uint64_t> perm(ka.size());
    for (std::uint64_t i = 0; i < ka.size(); ++i) {
      const auto it = where.find(ka[i]);
      if (it == where.end()) return {};
      perm[i] = it->second;
      where.erase(it);
    }
    return perm;
  }
  return {};
}

void compare_dataset(const h5::File& a, const h5::File& b, const h5::File* routing, const DiffBound* bound,
                     const std::string& ds, const Options& o, Result& r) {
  const PathInfo where = parse_path(ds);
  const Stage stage = stage_of(a.has_attr(ds, "stage") ? a : b, ds);
  if (!is_numeric(a, ds) || !is_numeric(b, ds)) {
    r.incomparable.push_back({ds, "not a numeric dataset in both files", stage, where.layer});
    return;
  }
  const ElementType ta = element_type(a, ds, o.raw), tb = element_type(b, ds, o.raw);
  const auto da = a.info(ds).dims, db = b.info(ds).dims;
  if (da != db) {
    r.incomparable.push_back(
        {ds, "shape " + shape_text(da) + " in " + a.path() + " vs " + shape_text(db) + " in " + b.path(), stage,
         where.layer});
    return;
  }
  const ElementType ct = coarser(ta, tb);
  DatasetResult d;
  d.path = ds;
  d.dims = da;
  d.dtype_a = ta.label;
  d.dtype_b = tb.label;
  d.stage = stage;
  d.layer = where.layer;
  d.rank = where.rank;
  d.tolerance = o.tolerances.lookup(ds, ct.type);
  Criterion crit = Criterion::tolerance;
  double threshold = 0;
  std::unique_ptr<ElementBounds> bounds =
      bound ? bound->for_dataset(a, b, ds, da, stage == Stage::dispatch, o.raw, r.bound_note) : nullptr;
  if (bounds) crit = Criterion::bound, d.criterion = "bound";
  else if (o.delta) crit = Criterion::delta, threshold = *o.delta, d.criterion = "delta";
  else if (o.relative) crit = Criterion::relative, threshold = *o.relative, d.criterion = "relative";
  else d.criterion = (d.tolerance.atol == 0 && d.tolerance.rtol == 0) ? "exact" : "atol+rtol";
  const bool native_f32 = ta.type == DType::f32 && tb.type == DType::f32 && !ta.integer && !tb.integer;
  Comparator cmp(ct.integer ? DType::i64 : ct.type, crit, d.tolerance, threshold, native_f32);

  Attributor at({&a, &b, routing}, ds, da);
  d.axes = at.axes();
  if (!at.routing_source().empty() && r.routing_note.empty()) r.routing_note = at.routing_source();
  const std::uint64_t rows = da.empty() ? 1 : da[0], row_elems = at.row_elements();
  d.row_max_abs.assign(rows, 0);
  d.row_mean_abs.assign(rows, 0);
  d.row_mismatched.assign(rows, 0);
  std::vector<std::uint64_t> row_finite(rows, 0);

  BlockReader ra(a, ds, o.raw, o.block_elements), rb(b, ds, o.raw, o.block_elements);
  bool first_found = false;
  const auto perm = o.match_rows ? row_permutation(a, b, ds, da, at.axes()) : std::vector<std::uint64_t>{};
  // One pass, in element order (the sums' order): an equal finite pair only adds to the sums;
  // every other pair goes through the whole judgement.
  auto process = [&](const auto* va, const auto* vb, std::size_t n, std::uint64_t first) {
    std::uint64_t row = first / row_elems, in_row = first % row_elems;
    for (size_t i = 0; i < n; ++i) {
      for (std::size_t run = cmp.add_equal_run(va + i, vb + i, n - i); run > 0;) {
        const std::uint64_t take = std::min<std::uint64_t>(run, row_elems - in_row);
        row_finite[row] += take;
        run -= take, i += take, in_row += take;
        if (in_row == row_elems) in_row = 0, ++row;
      }
      if (i == n) break;
      const double x = va[i], y = vb[i];
      const std::uint64_t flat = first + i, row_of = row, column = in_row;
      if (++in_row == row_elems) in_row = 0, ++row;
      // The bound comes from the second file's element: its row of the same source when matched.
      const double limit = bounds ? bounds->at(perm.empty() ? flat : perm[row_of] * row_elems + column) : 0;
      const auto e = cmp.add(x, y, limit);
      if (e.new_max_ratio) d.max_ratio_at = at.locate(flat);
      if (e.differ) d.row_max_abs[row_of] = std::max(d.row_max_abs[row_of], e.abs);
      if (std::isfinite(e.abs)) d.row_mean_abs[row_of] += e.abs, ++row_finite[row_of];
      if (e.new_max_abs) d.max_abs_at = at.locate(flat);
      if (e.new_max_rel) d.max_rel_at = at.locate(flat);
      if (!e.mismatch) continue;
      ++d.row_mismatched[row_of];
      const Location l = at.locate(flat);
      if (!first_found) d.first_mismatch_at = l, first_found = true;
      if (l.rank >= 0) tally(r.per_rank[l.rank], e.abs, ds);
      if (l.expert >= 0) tally(r.per_expert[l.expert], e.abs, ds);
      if (l.token >= 0) tally(r.per_token[{l.layer, l.rank, l.token}], e.abs, ds);
      else if (l.src_token >= 0) tally(r.per_token[{l.layer, l.src_rank, l.src_token}], e.abs, ds);
    }
  };
  if (!perm.empty()) {
    // Received rows arrive in a different order (atomics-based slot reservation): compare
    // each row of the first file with the row of the second that came from the same source.
    d.rows_matched = true;
    std::vector<double> va, vb;
    for (std::uint64_t i = 0; i < rows; ++i) {
      ra.read_row(i, va);
      rb.read_row(perm[i], vb);
      process(va.data(), vb.data(), va.size(), i * row_elems);
    }
  } else {
    // Two threads: the next pair is read ahead while this one judges every pair and takes the
    // five sums of calc_diff and the cosine (in element order, the order that sets their bits).
    // float32 is read as stored.
    auto stream = [&](auto* type) {
      using T = std::remove_pointer_t<decltype(type)>;
      PairStream<T> pairs(ra, rb);
      const std::vector<T>*va, *vb;
      std::uint64_t first = 0;
      while (pairs.next(va, vb, first)) process(va->data(), vb->data(), va->size(), first);
    };
    if (ra.native_f32() && rb.native_f32()) stream(static_cast<float*>(nullptr));
    else stream(static_cast<double*>(nullptr));
  }
  for (std::uint64_t i = 0; i < rows; ++i)
    if (row_finite[i]) d.row_mean_abs[i] /= static_cast<double>(row_finite[i]);
  d.metrics = cmp.metrics();
  if (bounds) r.worst.add(d.metrics.max_ratio, place_of(d.max_ratio_at), ds);
  r.datasets.push_back(std::move(d));
}

// FNV-1a 64 of a file's bytes, as golden and run files record their trace's (trace_hash).
std::string file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::uint64_t h = 0xcbf29ce484222325ULL;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 0x100000001b3ULL;
    if (!in) break;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// The trace a golden or run file names (trace_path), when it is still there with the same
// bytes (trace_hash): its topk_ids give token slots their experts without --trace.
std::string recorded_trace(const h5::File& f) {
  if (!f.has_attr("/", "trace_path") || !f.has_attr("/", "trace_hash")) return "";
  const std::string p = f.attr_string("/", "trace_path");
  const std::filesystem::path beside = std::filesystem::path(f.path()).parent_path() / p;
  for (const std::string& c : {p, beside.string()}) {
    std::error_code ec;
    if (c.empty() || !std::filesystem::is_regular_file(c, ec)) continue;
    if (file_hash(c) == f.attr_string("/", "trace_hash")) return c;
  }
  return "";
}

bool excluded(const Options& o, const std::string& path) {
  return std::any_of(o.exclude.begin(), o.exclude.end(), [&](const std::string& p) {
    for (std::string q = path; !q.empty(); q = q.substr(0, q.rfind('/')))
      if (glob_match(p, q)) return true;
    return false;
  });
}

std::string root_format(const h5::File& f) { return f.has_attr("/", "format") ? f.attr_string("/", "format") : ""; }

}  // namespace

bool selected(const Options& o, const std::string& path) {
  const bool under = o.objects.empty() || std::any_of(o.objects.begin(), o.objects.end(), [&](const std::string& obj) {
                       return path == obj || obj == "/" || path.rfind(obj + "/", 0) == 0;
                     });
  return under && !excluded(o, path);
}

Result run(const std::string& file_a, const std::string& file_b, const Options& o) {
  if (o.delta && o.relative) throw Error("-d and -p are mutually exclusive (as in h5diff)");
  const h5::File a = h5::File::open_read(file_a), b = h5::File::open_read(file_b);
  std::optional<h5::File> routing;
  std::string routing_path = o.routing_trace;
  if (routing_path.empty()) routing_path = recorded_trace(a);
  if (routing_path.empty()) routing_path = recorded_trace(b);
  if (!routing_path.empty()) routing = h5::File::open_read(routing_path);
  for (const auto& obj : o.objects)
    if (!a.exists(obj) && !b.exists(obj)) throw Error(obj + ": in neither " + file_a + " nor " + file_b);

  Result r;
  // The rounding bound, unless a tolerance was asked for; its routing is the trace's.
  const bool explicit_tolerance =
      o.delta || o.relative || o.tolerances.atol || o.tolerances.rtol || !o.tolerances.rules.empty();
  std::optional<Trace> routing_trace;
  std::string unreadable;
  const Trace* routing_data = o.routing;
  if (!routing_data && !routing_path.empty()) {
    ReadOptions ro;
    ro.tensors = ro.captured = ro.weights = false;
    try {
      routing_trace = read_trace(routing_path, ro);
      routing_data = &*routing_trace;
    } catch (const Error& e) {
      unreadable = e.what();  // attribution still reads its topk_ids; the bound needs a whole trace
    }
  }
  std::optional<DiffBound> bound;
  if (o.rounding_aware && !explicit_tolerance) {
    bound = DiffBound::make(a, b, routing_data, r.bound_note);
    if (!bound && !r.bound_note.empty() && !unreadable.empty())
      r.bound_note = "the rounding bound needs the trace, which is not readable (" + unreadable +
                     "): using torch.testing's tolerances";
  }
  if (bound) r.bound_label = bound->label();
  r.routing_file = o.routing ? "" : routing_path;
  r.file_a = file_a;
  r.file_b = file_b;
  r.format_a = root_format(a);
  r.format_b = root_format(b);
  r.structure_counts = r.format_a == r.format_b;
  auto oa = objects(a, o.objects), ob = objects(b, o.objects);
  // --exclude: drop matching objects and everything under them, as h5diff --exclude-path.
  for (auto* m : {&oa, &ob})
    for (auto it = m->begin(); it != m->end();) it = excluded(o, it->first) ? m->erase(it) : std::next(it);
  // Only the topmost object missing from the other file is listed, not each of its children.
  auto listed_parent = [](const std::vector<std::string>& listed, const std::string& p) {
    return !listed.empty() && p.rfind(listed.back() + "/", 0) == 0;
  };
  for (const auto& [path, group] : oa) {
    const auto it = ob.find(path);
    if (it == ob.end()) {
      if (!listed_parent(r.only_a, path)) r.only_a.push_back(path);
      continue;
    }
    const bool in_dispatch = path.find("/dispatch") != std::string::npos;
    const Stage stage = group ? (in_dispatch ? Stage::dispatch : Stage::other) : stage_of(a, path);
    if (group != it->second) {
      r.incomparable.push_back({path, "a group in one file and a dataset in the other", stage, parse_path(path).layer});
      continue;
    }
    compare_attributes(a, b, path, stage, r);
    if (!group) compare_dataset(a, b, routing ? &*routing : nullptr, bound ? &*bound : nullptr, path, o, r);
  }
  for (const auto& [path, group] : ob)
    if (!oa.count(path) && !listed_parent(r.only_b, path)) r.only_b.push_back(path);
  // Named objects must be comparable: refuse rather than report.
  for (const auto& i : r.incomparable)
    if (std::find(o.objects.begin(), o.objects.end(), i.path) != o.objects.end())
      throw Error(i.path + ": cannot compare: " + i.why);
  return r;
}

}  // namespace moesim::diff
