// moesim diff A.h5 B.h5 [OBJECT...]: compares two moesim HDF5 files; exit 0 same, 1 different,
// 2 error, as h5diff. Golden and run files (both record their numerics) are judged by the rounding
// bound (traces/diff_bound.hpp) unless a tolerance, -d or -p is given. B is the reference: relative errors and the tolerance divide by |b|
// (torch.testing's "expected"), except -p, which follows h5diff 1.10.8 and divides by |a|:
// |a-b|/|a| > R differs, |x| < DBL_EPSILON counts as zero, a zero a against a non-zero b is
// "not comparable" and differs, and -p below DBL_EPSILON compares exactly. -d and -p on
// float32 subtract in float32, as h5diff does, so counts agree element for element; bf16/fp8
// datasets are decoded unless --raw (h5diff compares their stored integers).
// --report OUT.h5 holds /datasets/<path>/row_max_abs, row_mean_abs, row_mismatched (one value
// per token or received row) and /per_rank, /per_expert, /per_token, /worst_tokens tables.
#include <iostream>

#include "command.hpp"
#include "diff.hpp"
#include "options.hpp"
#include "output_path.hpp"
#include "transport_check.hpp"

namespace moesim::cli {
namespace {

int run_diff(const std::vector<std::string>& args) {
  po::options_description desc(
      "When both files record their numerics (golden and run files), every output element is judged\n"
      "against the rounding bound of reference/NUMERICS.md (\"How far two results may differ\"), the\n"
      "verdict run, bisect and diagnose give, computed from the second file's magnitudes and the trace's\n"
      "router weights (the trace the files name, or --trace); dispatch-stage data must be equal, and a run\n"
      "file's received rows and combine weights must be, bit for bit, what its recorded dispatch model\n"
      "delivers for that routing (transported values are copies, never rounded). Other\n"
      "files, or any of --atol/--rtol/--tol/--tol-file/-d/-p, use those tolerances as before.\n"
      "Exit 0: no difference; 1: a difference; 2: bad input.\n\n"
      "options");
  desc.add_options()("a", po::value<std::string>()->required(), "first file (the candidate)")(
      "b", po::value<std::string>()->required(), "second file (the reference)")(
      "objects", po::value<std::vector<std::string>>(), "compare only these datasets or groups")(
      "exclude", po::value<std::vector<std::string>>(), "skip objects matching this glob, and what lies under them (repeatable)")(
      "json", "print JSON instead of text")("report", po::value<std::string>(), "write per-token error arrays to this HDF5 file")(
      "quiet,q", "print nothing; the exit code says")("verbose,v", "list datasets within tolerance too")(
      "delta,d", po::value<double>(), "h5diff -d: an element differs when |a-b| > D")(
      "relative,p", po::value<double>(), "h5diff -p: an element differs when |a-b|/|a| > R (a = 0 differs unless b = 0)")(
      "atol", po::value<double>(), "absolute tolerance for every float dataset; an element passes when "
                                   "|a-b| <= atol + rtol*|b| (b: the second file), instead of the rounding bound; other files "
                                   "default per dtype as torch.testing")(
      "rtol", po::value<double>(), "relative tolerance for every float dataset")(
      "tol", po::value<std::vector<std::string>>(), "PATTERN=ATOL,RTOL for datasets matching the glob (repeatable)")(
      "tol-file", po::value<std::string>(), "file of 'PATTERN ATOL RTOL' lines")(
      "trace", po::value<std::string>(), "trace whose topk_ids name the experts of golden/run files")(
      "worst", po::value<int>()->default_value(10), "how many worst tokens to list")(
      "raw", "compare bf16/fp8 datasets as their stored integers (as h5diff does; without it they are decoded)")(
      "no-match-rows", "compare received rows in stored order, not matched by source")(
      "block", po::value<std::uint64_t>()->default_value(std::uint64_t{1} << 20), "elements read per block");
  po::positional_options_description pos;
  pos.add("a", 1).add("b", 1).add("objects", -1);
  po::variables_map vm;
  if (!parse_options("diff", "A.h5 B.h5 [OBJECT...]", desc, pos, args, vm)) return 0;

  if (vm.count("report"))
    check_output_path(vm["report"].as<std::string>(),
                      {vm["a"].as<std::string>(), vm["b"].as<std::string>(),
                       vm.count("trace") ? vm["trace"].as<std::string>() : std::string(),
                       vm.count("tol-file") ? vm["tol-file"].as<std::string>() : std::string()});
  diff::Options o;
  if (vm.count("delta")) o.delta = vm["delta"].as<double>();
  if (vm.count("relative")) o.relative = vm["relative"].as<double>();
  if (o.delta && o.relative) throw UsageError("-d and -p are mutually exclusive");
  if ((o.delta && *o.delta < 0) || (o.relative && *o.relative < 0)) throw UsageError("-d and -p take a value >= 0");
  if (vm.count("atol")) o.tolerances.atol = vm["atol"].as<double>();
  if (vm.count("rtol")) o.tolerances.rtol = vm["rtol"].as<double>();
  // File rules first, so command-line rules win.
  if (vm.count("tol-file")) o.tolerances.rules = diff::read_tolerance_file(vm["tol-file"].as<std::string>());
  if (vm.count("tol"))
    for (const auto& s : vm["tol"].as<std::vector<std::string>>()) o.tolerances.rules.push_back(diff::parse_rule(s));
  if (vm.count("objects")) o.objects = vm["objects"].as<std::vector<std::string>>();
  if (vm.count("exclude")) o.exclude = vm["exclude"].as<std::vector<std::string>>();
  if (vm.count("trace")) o.routing_trace = vm["trace"].as<std::string>();
  o.worst_tokens = vm["worst"].as<int>();
  o.raw = vm.count("raw") > 0;
  o.verbose = vm.count("verbose") > 0;
  o.match_rows = vm.count("no-match-rows") == 0;
  o.block_elements = vm["block"].as<std::uint64_t>();
  if (o.block_elements == 0) throw UsageError("--block must be positive");

  const diff::Result r = sim::compare_files(vm["a"].as<std::string>(), vm["b"].as<std::string>(), o);
  if (vm.count("report")) diff::write_report(r, o, vm["report"].as<std::string>());
  if (!vm.count("quiet")) std::cout << (vm.count("json") ? diff::format_json(r, o) : diff::format_text(r, o));
  return r.different() ? 1 : 0;
}

const bool registered = register_command({"diff", "compare two moesim HDF5 files, naming where they diverge", run_diff});

}  // namespace
}  // namespace moesim::cli
