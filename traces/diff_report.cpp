// --report OUT.h5: per-row error arrays of every compared dataset, for plotting, plus the
// per-rank, per-expert and per-token tallies. Written through h5::AtomicOutput.
#include <moesim/version.hpp>

#include "diff.hpp"
#include "h5.hpp"

namespace moesim::diff {

namespace {
template <class T>
void column(h5::File& f, const std::string& ds, const std::vector<T>& v) {
  f.write(ds, {static_cast<std::uint64_t>(v.size())}, v.data());
}

void table(h5::File& f, const std::string& g, const std::string& id, const std::map<int, Tally>& m) {
  std::vector<std::int32_t> ids;
  std::vector<std::int64_t> mism;
  std::vector<double> mx;
  for (const auto& [k, t] : m) ids.push_back(k), mism.push_back(t.mismatched), mx.push_back(t.max_abs);
  f.create_group(g);
  column(f, g + "/" + id, ids);
  column(f, g + "/mismatched", mism);
  column(f, g + "/max_abs", mx);
}

void token_table(h5::File& f, const std::string& g, const std::vector<std::pair<TokenKey, Tally>>& v) {
  std::vector<std::int32_t> layer, rank;
  std::vector<std::int64_t> token, mism;
  std::vector<double> mx;
  for (const auto& [k, t] : v) {
    layer.push_back(k.layer), rank.push_back(k.rank), token.push_back(k.token);
    mism.push_back(t.mismatched), mx.push_back(t.max_abs);
  }
  f.create_group(g);
  column(f, g + "/layer", layer);
  column(f, g + "/rank", rank);
  column(f, g + "/token", token);
  column(f, g + "/mismatched", mism);
  column(f, g + "/max_abs", mx);
}
}  // namespace

void write_report(const Result& r, const Options& o, const std::string& path) {
  h5::AtomicOutput out(path);
  h5::File& f = out.file();
  f.set_attr("/", "format", "moesim-diff-report");
  f.set_attr("/", "schema_version", 1);
  f.set_attr("/", "moesim_version", std::string(version));
  f.set_attr("/", "file_a", r.file_a);
  f.set_attr("/", "file_b", r.file_b);
  f.set_attr("/", "different", r.different() ? 1 : 0);
  for (const auto& d : r.datasets) {
    // /datasets/<compared path>/row_* : one value per token or received row (the first axis).
    const std::string g = "/datasets" + d.path;
    const Metrics& m = d.metrics;
    column(f, g + "/row_max_abs", d.row_max_abs);
    column(f, g + "/row_mean_abs", d.row_mean_abs);
    column(f, g + "/row_mismatched", d.row_mismatched);
    const auto comma = d.axes.find(',');
    f.set_attr(g, "row_axis", d.axes.empty() ? std::string("dim0") : d.axes.substr(0, comma));
    f.set_attr(g, "stage", std::string(name(d.stage)));
    f.set_attr(g, "elements", static_cast<std::int64_t>(m.elements));
    f.set_attr(g, "mismatched", static_cast<std::int64_t>(m.mismatched));
    f.set_attr(g, "max_abs", m.max_abs);
    f.set_attr(g, "mean_abs", m.mean_abs());
    f.set_attr(g, "max_rel", m.max_rel);
    f.set_attr(g, "max_ulp", m.max_ulp);
    f.set_attr(g, "calc_diff", m.calc_diff());
    f.set_attr(g, "cosine", m.cosine());
    f.set_attr(g, "atol", d.tolerance.atol);
    f.set_attr(g, "rtol", d.tolerance.rtol);
  }
  table(f, "/per_rank", "rank", r.per_rank);
  table(f, "/per_expert", "expert", r.per_expert);
  token_table(f, "/per_token", std::vector<std::pair<TokenKey, Tally>>(r.per_token.begin(), r.per_token.end()));
  token_table(f, "/worst_tokens", r.worst_tokens(o.worst_tokens));
  out.commit();
}

}  // namespace moesim::diff
