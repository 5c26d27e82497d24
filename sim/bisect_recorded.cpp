// moesim bisect --candidate FILE: a recorded candidate (a GPU or simulator run in the golden
// layout, or the trace's own captured outputs) against the CPU reference model. A recording
// cannot be re-run on a smaller trace, so this localizes only.
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "bisect.hpp"
#include "error.hpp"
#include "temp_files.hpp"
#include "golden.hpp"
#include "trace_io.hpp"
#include "transport_check.hpp"

namespace moesim::sim {

namespace {
// The trace's captured outputs laid out as a run file, so diff lines them up with the golden.
// Its numerics are the mode the capture is judged in.
void write_captured_outputs(const Trace& t, Numerics numerics, const std::string& path) {
  h5::AtomicOutput out(path);
  h5::File& f = out.file();
  f.set_attr("/", "format", "moesim-capture");
  f.set_attr("/", "numerics", std::string(name(numerics)));
  const auto H = static_cast<std::uint64_t>(t.config.hidden);
  bool any = false;
  for (const Layer& l : t.layers)
    for (std::size_t r = 0; r < l.ranks.size(); ++r) {
      const Captured& c = l.ranks[r].captured;
      const auto T = static_cast<std::uint64_t>(l.ranks[r].num_tokens);
      const std::string rp = rank_path(l.index, static_cast<int>(r));
      auto put = [&](const char* leaf, const std::vector<float>& v, const char* stage) {
        if (v.size() != T * H) return;
        f.write(rp + "/" + leaf, {T, H}, v.data());
        f.set_attr(rp + "/" + leaf, "stage", stage);
        f.set_attr(rp + "/" + leaf, "axes", "token,hidden");
        any = true;
      };
      put("final_out", c.final_out, "final");
      put("combine_out", c.combine_out, "combine");
    }
  if (!any) throw Error(t.path + ": the trace captured no final_out or combine_out to compare");
  out.commit();
}
}  // namespace

RecordedDivergence locate_recorded(const Trace& trace, const std::string& candidate, Numerics numerics,
                                   const diff::ToleranceRules& tolerances, const std::string& work_dir) {
  RecordedDivergence res;
  const std::string stem = work_dir + "/moesim-bisect-" + std::to_string(::getpid());
  const temp_files::Scratch cand_file(stem + "-recorded.h5"), gold_file(stem + "-golden.h5");
  const std::string &cand = cand_file.path(), &gold = gold_file.path();
  std::string compared = candidate;
  DType fp8_format = DType::e4m3;  // a run file records the one it quantized to
  {
    const h5::File f = h5::File::open_read(candidate);
    const std::string format = f.has_attr("/", "format") ? f.attr_string("/", "format") : "";
    if (format == kTraceFormat) {
      res.source = "captured outputs of " + candidate;
      compared = cand;
    } else {
      res.source = candidate + (format.empty() ? "" : " (" + format + ")");
      if (f.has_attr("/", "numerics")) {
        try {
          numerics = parse_numerics(f.attr_string("/", "numerics"));
        } catch (const Error& e) {
          f.fail("/", std::string("attribute 'numerics': ") + e.what());  // name the file and where
        }
      }
      if (f.has_attr("/", "fp8_format")) {
        try {
          fp8_format = parse_dtype(f.attr_string("/", "fp8_format"));
        } catch (const Error& e) {
          f.fail("/", std::string("attribute 'fp8_format': ") + e.what());
        }
        if (!is_fp8(fp8_format)) f.fail("/", "attribute 'fp8_format' is not an fp8 format");
      }
    }
  }
  if (compared == cand) {
    const Trace captured = candidate == trace.path ? trace : read_trace(candidate);
    write_captured_outputs(captured, numerics, cand);
  }
  ReferenceOptions ro;
  ro.numerics = numerics;
  ro.fp8_format = fp8_format;
  write_golden(gold, trace, run_reference(trace, ro), numerics, "moesim bisect (reference)", "cpu", fp8_format);
  res.numerics = numerics;
  diff::Options o;
  o.tolerances = tolerances;
  o.routing = &trace;
  const diff::Result r = compare_files(compared, gold, o);
  res.first.verdict = r.verdict();
  for (const auto& v : r.divergences()) {
    if (v.layer < 0) continue;
    res.first.found = true;
    res.first.layer = v.layer;
    res.first.stage = v.stage;
    res.first.dataset = v.path;
    res.first.what = v.what;
    break;
  }
  if (!res.first.found) return res;
  for (const auto& t : r.transported)  // a transported value names its source token
    if (t.path == res.first.dataset && t.what == res.first.what) {
      res.first.rank = t.src_rank;
      res.first.token = t.src_token;
      res.first.max_abs = std::fabs(t.got - t.want);
    }
  for (const auto& d : r.datasets)
    if (d.path == res.first.dataset) {
      res.first.rank = d.max_abs_at.rank;
      res.first.token = d.max_abs_at.token;
      res.first.max_abs = d.metrics.max_abs;
    }
  for (const auto& [key, tally] : r.worst_tokens(1 << 30))
    if (key.layer == res.first.layer && res.worst.size() < 10) res.worst.emplace_back(key.rank, key.token, tally.max_abs);
  return res;
}

}  // namespace moesim::sim
