#include "diff_attrib.hpp"

#include <cstdlib>
#include <limits>
#include <sstream>

namespace moesim::diff {

PathInfo parse_path(const std::string& path) {
  PathInfo p;
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string s; std::getline(ss, s, '/');)
    if (!s.empty()) parts.push_back(s);
  auto number = [](const std::string& s, int& out) {
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end) return false;
    out = static_cast<int>(v);
    return true;
  };
  if (parts.size() >= 2 && parts[0] == "layers") number(parts[1], p.layer);
  if (parts.size() >= 4 && parts[0] == "layers" && parts[2] == "ranks" && number(parts[3], p.rank))
    p.rank_group = "/layers/" + parts[1] + "/ranks/" + parts[3];
  return p;
}

Stage stage_of(const h5::File& f, const std::string& ds) {
  if (f.has_attr(ds, "stage")) {
    const std::string s = f.attr_string(ds, "stage");
    if (s == "dispatch") return Stage::dispatch;
    if (s == "expert") return Stage::expert;
    if (s == "combine") return Stage::combine;
    if (s == "final") return Stage::final_;
    if (s == "input") return Stage::input;
    return Stage::other;
  }
  const std::string leaf = ds.substr(ds.rfind('/') + 1);
  if (ds.find("/dispatch/") != std::string::npos || leaf.rfind("recv_", 0) == 0 || leaf == "src_token_pos")
    return Stage::dispatch;
  if (leaf == "expert_out" || leaf == "expert_rows") return Stage::expert;
  if (leaf == "combine_out") return Stage::combine;
  if (leaf == "final_out") return Stage::final_;
  if (leaf == "x" || leaf == "x_scales" || leaf == "topk_ids" || leaf == "topk_weights" ||
      ds.find("/weights/") != std::string::npos)
    return Stage::input;
  return Stage::other;
}

namespace {
std::vector<std::int64_t> read_ints(const h5::File& f, const std::string& ds) {
  const auto info = f.info(ds);
  const std::uint64_t rows = info.dims.empty() ? 1 : info.dims[0];
  const auto v = f.read_rows_as_double(ds, 0, rows);
  return std::vector<std::int64_t>(v.begin(), v.end());
}

// The first file holding `ds` with the given leading dims, or null.
const h5::File* find(const std::vector<const h5::File*>& files, const std::string& ds,
                     const std::vector<std::uint64_t>& lead) {
  for (const auto* f : files) {
    if (!f || !f->exists(ds) || f->is_group(ds)) continue;
    const auto d = f->info(ds).dims;
    if (d.size() < lead.size()) continue;
    bool ok = true;
    for (size_t i = 0; i < lead.size(); ++i) ok = ok && d[i] == lead[i];
    if (ok) return f;
  }
  return nullptr;
}

std::string parent(const std::string& ds) { return ds.substr(0, ds.rfind('/')); }

// Received ids may be local (DeepEP normal mode) or implied by the layout (DeepEP low latency,
// pplx): the dispatch group's id_space attribute says. Local ids become global with a
// contiguous placement from any file's /config; false when they cannot, so no expert is named
// rather than a wrong one.
bool global_ids(const std::vector<const h5::File*>& files, const h5::File& f, const std::string& dir, int rank,
                std::vector<std::int64_t>& ids) {
  if (!f.has_attr(dir, "id_space") || f.attr_string(dir, "id_space") == "global") return true;
  for (const auto* c : files) {
    if (!c || !c->has_attr("/config", "num_ranks") || !c->has_attr("/config", "num_experts")) continue;
    if (c->has_attr("/config/placement", "kind") && c->attr_string("/config/placement", "kind") != "contiguous")
      return false;
    // A damaged config (0 ranks, absurd counts) names no expert rather than dividing by zero.
    const std::int64_t experts = c->attr_int("/config", "num_experts"), ranks = c->attr_int("/config", "num_ranks");
    if (ranks <= 0 || experts <= 0 || experts > std::numeric_limits<std::int32_t>::max()) return false;
    const std::int64_t per_rank = experts / ranks;
    for (auto& id : ids)
      if (id >= 0) id += rank * per_rank;
    return true;
  }
  return false;
}
}  // namespace

Attributor::Attributor(const std::vector<const h5::File*>& files, const std::string& ds,
                       const std::vector<std::uint64_t>& dims)
    : path_(parse_path(ds)), dims_(dims) {
  for (size_t i = 1; i < dims.size(); ++i) row_elems_ *= dims[i];
  for (const auto* f : files)
    if (f && f->has_attr(ds, "axes")) {
      axes_text_ = f->attr_string(ds, "axes");
      break;
    }
  std::stringstream ss(axes_text_);
  for (std::string s; std::getline(ss, s, ',');) axes_.push_back(s);
  if (axes_.size() != dims.size()) axes_.assign(dims.size(), "");
  for (size_t i = 0; i < axes_.size(); ++i) {
    const auto& a = axes_[i];
    const int ii = static_cast<int>(i);
    if (a == "token" && token_axis_ < 0) token_axis_ = ii;
    if (a == "row" && row_axis_ < 0) row_axis_ = ii;
    if (a == "slot") slot_axis_ = ii;
    if (a == "hidden" || a == "block" || a == "column") column_axis_ = ii;
    if (a == "expert") expert_axis_ = ii;
  }
  if (path_.rank_group.empty()) return;
  const std::string g = path_.rank_group, here = parent(ds);
  if (row_axis_ == 0) {
    const std::vector<std::uint64_t> rows{dims[0]};
    // Sources: explicit src_rank/src_token (run files), else a capture's encoded positions.
    for (const std::string& dir : {here, g + "/dispatch", g + "/captured"}) {
      const auto* fr = find(files, dir + "/src_rank", rows);
      const auto* ft = find(files, dir + "/src_token", rows);
      if (fr && ft) {
        src_rank_ = read_ints(*fr, dir + "/src_rank");
        src_token_ = read_ints(*ft, dir + "/src_token");
        break;
      }
    }
    if (src_rank_.empty()) {
      for (const std::string& dir : {here, g + "/captured"}) {
        const std::string p = dir + "/src_token_pos";
        const auto* f = find(files, p, rows);
        if (!f || !f->exists("/config/mori") || !f->has_attr("/config", "num_ranks")) continue;
        const std::int64_t per_rank = f->attr_int("/config/mori", "max_num_inp_token_per_rank");
        const std::int64_t ranks = f->attr_int("/config", "num_ranks");
        const std::string enc = f->has_attr(p, "encoding") ? f->attr_string(p, "encoding") : "flat";
        // MORI: flat = srcPe * (ranks * per_rank) + token; before 2026-04, srcPe * per_rank + token.
        if (ranks <= 0 || per_rank <= 0 || per_rank > std::numeric_limits<std::int64_t>::max() / ranks) continue;
        const std::int64_t stride = enc == "flat" ? ranks * per_rank : enc == "legacy" ? per_rank : 0;
        if (stride <= 0) continue;
        for (auto pos : read_ints(*f, p)) {
          src_rank_.push_back(pos >= 0 ? pos / stride : -1);
          src_token_.push_back(pos >= 0 ? pos % stride : -1);
        }
        break;
      }
    }
  }
  if (slot_axis_ == 1 && dims.size() >= 2) {
    const std::vector<std::uint64_t> lead{dims[0], dims[1]};
    std::vector<std::string> candidates;
    if (token_axis_ == 0) candidates = {g + "/topk_ids"};
    if (row_axis_ == 0) candidates = {here + "/recv_topk_ids", g + "/dispatch/recv_topk_ids", g + "/captured/recv_topk_ids"};
    for (const auto& c : candidates)
      if (const auto* f = find(files, c, lead)) {
        ids_ = read_ints(*f, c);
        ids_k_ = static_cast<std::int64_t>(dims[1]);
        if (token_axis_ == 0) routing_from_ = f->path();  // token routings: worth naming
        if (!global_ids(files, *f, parent(c), path_.rank, ids_)) ids_.clear();
        break;
      }
  } else if (row_axis_ == 0) {
    const std::string c = g + "/dispatch/target_expert";
    if (const auto* f = find(files, c, {dims[0]})) target_expert_ = read_ints(*f, c);
  }
}

Location Attributor::locate(std::uint64_t flat) const {
  Location l;
  l.layer = path_.layer;
  l.rank = path_.rank;
  l.index.assign(dims_.size(), 0);
  for (size_t i = dims_.size(); i-- > 0;) {
    l.index[i] = flat % dims_[i];
    flat /= dims_[i];
  }
  auto at = [&](int axis) { return static_cast<std::int64_t>(l.index[static_cast<size_t>(axis)]); };
  if (token_axis_ >= 0) l.token = at(token_axis_);
  if (column_axis_ >= 0) l.column = at(column_axis_);
  if (expert_axis_ >= 0) l.expert = static_cast<int>(at(expert_axis_));
  if (row_axis_ >= 0) {
    l.row = at(row_axis_);
    if (row_axis_ == 0 && static_cast<size_t>(l.row) < src_rank_.size()) {
      l.src_rank = static_cast<int>(src_rank_[static_cast<size_t>(l.row)]);
      l.src_token = src_token_[static_cast<size_t>(l.row)];
    }
    if (row_axis_ == 0 && static_cast<size_t>(l.row) < target_expert_.size() &&
        target_expert_[static_cast<size_t>(l.row)] >= 0)
      l.expert = static_cast<int>(target_expert_[static_cast<size_t>(l.row)]);
  }
  if (slot_axis_ >= 0) {
    l.slot = static_cast<int>(at(slot_axis_));
    if (!ids_.empty()) {
      const auto id = ids_[static_cast<size_t>(at(0) * ids_k_ + l.slot)];
      if (id >= 0) l.expert = static_cast<int>(id);
    }
  }
  return l;
}

}  // namespace moesim::diff
