// moesim bisect TRACE -o MIN.h5 [candidate options]: where a candidate pipeline first diverges
// from the correct one, and a minimal trace that still diverges there. Exit 0 when nothing
// diverges, 1 when it does (MIN.h5 written), 2 on error. "Diverges" is diff's default verdict: an
// element past the rounding bound (traces/rounding_bound.hpp), unless --atol/--rtol are given.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "bisect.hpp"
#include "command.hpp"
#include "error.hpp"
#include "options.hpp"
#include "output_path.hpp"
#include "pairing.hpp"
#include "trace_io.hpp"

namespace moesim::cli {
namespace {

using namespace moesim::sim;

std::string where_text(const Divergence& d, int step = 0) {
  std::ostringstream s;
  s << "layer " << d.layer << (step ? " (step " + std::to_string(step) + ")" : "") << ", stage " << diff::name(d.stage) << " (" << d.dataset << ": " << d.what << ")";
  if (d.token >= 0) s << "; worst token: rank " << d.rank << " token " << d.token << ", max abs " << d.max_abs;
  if (!d.verdict.empty()) s << "\n  " << d.verdict;
  return s.str();
}

int run_bisect(const std::vector<std::string>& args) {
  po::options_description desc(
      "A stage diverges when an element is past the rounding bound of reference/NUMERICS.md (\"How far\n"
      "two results may differ\"), the verdict run, diff and diagnose give; --atol/--rtol replace it.\n"
      "Exit 0: nothing diverges; 1: a divergence (MIN.h5 written for a simulated candidate); 2: bad input.\n\n"
      "options");
  desc.add_options()
      ("trace", po::value<std::string>()->required(), "trace file")
      ("output,o", po::value<std::string>(), "minimal trace to write")
      ("candidate", po::value<std::string>(), "a recorded candidate instead of a simulator configuration: a run or golden-layout file, or a trace with captured outputs (localizes only)")
      ("dispatch", po::value<std::string>(), "candidate dispatch: mori | deepep-ht | deepep-ll | pplx | pairs (default: the trace's library, else mori)")
      ("consumer", po::value<std::string>(), "candidate consumer (default: the correct one for the dispatch)")
      ("combine", po::value<std::string>(), "candidate combine (default: the correct one for the dispatch)")
      ("numerics", po::value<std::string>(), "exact | fp32 | bf16 | fp8 | hf-bf16 (default: fp32 for f32 tokens, fp8 for fp8, else bf16)")
      ("negative-ids", po::value<std::string>()->default_value("skip"), "mori -1 ids: skip or rank0")
      ("non-local", po::value<std::string>()->default_value("wrap"), "all-k: non-local ids wrap, clamp or mask")
      ("whole-buffer", po::bool_switch(), "the consumer reads the whole receive buffer")
      ("inject", po::value<std::string>(), "inject a fault into the candidate: LAYER,STAGE,RANK,TOKEN[,DELTA]")
      ("atol", po::value<double>(), "absolute tolerance instead of the rounding bound (|a-b| <= atol + rtol*|b|)")
      ("rtol", po::value<double>(), "relative tolerance instead of the rounding bound")
      ("max-tests", po::value<int>()->default_value(4000), "most candidate runs delta debugging may spend")
      ("threads", po::value<int>()->default_value(1), "threads for the expert math (results do not depend on it)");
  po::positional_options_description pos;
  pos.add("trace", 1);
  po::variables_map vm;
  if (!parse_options("bisect", "TRACE -o MIN.h5 [options]", desc, pos, args, vm)) return 0;

  if (vm.count("output"))
    check_output_path(vm["output"].as<std::string>(),
                      {vm["trace"].as<std::string>(), vm.count("candidate") ? vm["candidate"].as<std::string>() : ""});
  const Trace trace = read_trace(vm["trace"].as<std::string>());
  const TraceConfig& c = trace.config;
  BisectOptions o;
  SimOptions& s = o.candidate;
  s.dispatch.model = vm.count("dispatch") ? parse_dispatch(vm["dispatch"].as<std::string>()) : default_dispatch(c);
  s.consumer.model = vm.count("consumer") ? parse_consumer(vm["consumer"].as<std::string>()) : default_consumer(s.dispatch.model);
  s.combine = vm.count("combine") ? parse_combine(vm["combine"].as<std::string>()) : default_combine(s.dispatch.model, c.mori.kernel_type);
  s.numerics = vm.count("numerics") ? parse_numerics(vm["numerics"].as<std::string>()) : default_numerics(c.token_dtype);
  s.deepep_version = default_deepep_version(trace);
  const std::string neg = vm["negative-ids"].as<std::string>();
  if (neg != "skip" && neg != "rank0") throw UsageError("--negative-ids is skip or rank0");
  s.dispatch.negative = neg == "rank0" ? NegativeIds::rank0 : NegativeIds::skip;
  s.dispatch.max_tokens_per_rank = c.mori.max_num_inp_token_per_rank;
  s.dispatch.max_total_recv = c.mori.max_total_recv_tokens;
  s.consumer.non_local = parse_non_local(vm["non-local"].as<std::string>());
  s.consumer.whole_buffer = vm["whole-buffer"].as<bool>();
  s.threads = std::max(1, vm["threads"].as<int>());
  // The reference: the same dispatch with the pairing a correct integration uses.
  o.reference = s;
  o.reference.consumer = ConsumerOptions{};
  o.reference.consumer.model = default_consumer(s.dispatch.model);
  o.reference.combine = default_combine(s.dispatch.model, c.mori.kernel_type);
  o.reference.dispatch.negative = NegativeIds::skip;
  if (vm.count("inject")) o.fault = parse_fault(vm["inject"].as<std::string>());
  if (vm.count("atol") || vm.count("rtol")) {
    o.tolerances.rules.push_back({"*", {vm.count("atol") ? vm["atol"].as<double>() : 0.0,
                                        vm.count("rtol") ? vm["rtol"].as<double>() : 0.0}});
    o.tolerances.rules.push_back({"*/src_*", {0, 0}});  // layouts are exact
    o.tolerances.rules.push_back({"*/recv_topk_ids", {0, 0}});
    o.tolerances.rules.push_back({"*/target_expert", {0, 0}});
  }
  o.max_tests = vm["max-tests"].as<int>();

  if (vm.count("candidate")) {
    if (o.fault) throw UsageError("--inject needs a simulated candidate, not --candidate");
    const std::string dir = vm.count("output") ? std::filesystem::absolute(vm["output"].as<std::string>()).parent_path().string()
                                               : std::filesystem::temp_directory_path().string();
    const RecordedDivergence rec = locate_recorded(trace, vm["candidate"].as<std::string>(), s.numerics, o.tolerances, dir);
    std::cout << trace.path << ": candidate " << rec.source << " vs the reference model, numerics " << name(rec.numerics) << "\n";
    if (!rec.first.found) {
      std::cout << "no divergence: " << (rec.first.verdict.empty() ? "within tolerance" : rec.first.verdict) << "\n";
      return 0;
    }
    std::cout << "first divergence: " << where_text(rec.first, trace.layers[static_cast<std::size_t>(rec.first.layer)].step)
              << "\nworst tokens of layer " << rec.first.layer << ":";
    for (const auto& [rank, token, worst] : rec.worst) std::cout << " rank " << rank << " token " << token << " (" << worst << ")";
    std::cout << "\na recorded candidate cannot be re-run on a smaller trace: nothing written; a simulator"
                 " configuration (--consumer, --combine ...) can be bisected and shrunk\n";
    return 1;
  }
  if (!vm.count("output")) throw UsageError("-o MIN.h5 is required");
  const std::string out = vm["output"].as<std::string>();
  o.work_dir = std::filesystem::absolute(out).parent_path().string();

  const BisectResult r = bisect(trace, o);
  std::cout << trace.path << ": candidate " << name(s.dispatch.model) << " / " << name(s.consumer.model) << " / "
            << name(s.combine) << ", numerics " << name(s.numerics);
  if (o.fault) std::cout << ", injected fault " << fault_text(*o.fault);
  std::cout << "\n";
  if (!r.first.found) {
    std::cout << "no divergence: " << (r.first.verdict.empty() ? "within tolerance" : r.first.verdict)
              << "; nothing written\n";
    return 0;
  }
  std::cout << "first divergence: " << where_text(r.first, trace.layers[static_cast<std::size_t>(r.first.layer)].step)
            << "\n";
  if (!r.reference_agrees) std::cout << "warning: " << r.reference_note << "\n";

  // The command that reproduces the divergence on the minimal trace.
  std::ostringstream cmd;
  cmd << "moesim bisect " << out << " -o " << out << ".min.h5 --dispatch " << name(s.dispatch.model) << " --consumer "
      << name(s.consumer.model) << " --combine " << name(s.combine) << " --numerics " << name(s.numerics);
  if (s.dispatch.negative == NegativeIds::rank0) cmd << " --negative-ids rank0";
  if (s.consumer.whole_buffer) cmd << " --whole-buffer";
  if (!vm["non-local"].defaulted()) cmd << " --non-local " << vm["non-local"].as<std::string>();
  if (vm.count("atol")) cmd << " --atol " << vm["atol"].as<double>();
  if (vm.count("rtol")) cmd << " --rtol " << vm["rtol"].as<double>();
  if (r.minimal_fault) cmd << " --inject " << fault_text(*r.minimal_fault);
  Trace minimal = r.minimal;
  minimal.command = cmd.str();
  write_trace(minimal, out);

  std::cout << "minimal trace: " << r.kept_tokens.size() << " of " << r.tokens_before << " tokens (";
  for (std::size_t i = 0; i < r.kept_tokens.size(); ++i)
    std::cout << (i ? ", " : "") << "rank " << r.kept_tokens[i].first << " token " << r.kept_tokens[i].second;
  std::cout << "), " << r.slots_after << " of " << r.slots_before << " top-k slots, " << r.ranks_after << " of "
            << r.ranks_before << " ranks, " << r.experts_after << " of " << r.experts_before << " experts, layer " << r.first.layer << " (earlier layers kept empty); " << r.tests
            << " runs\n";
  if (r.minimal_divergence.found) std::cout << "  where it diverges at " << where_text(r.minimal_divergence) << "\n";
  std::cout << "wrote " << out << "\nreproduce: " << minimal.command << "\n";
  return 1;
}

const bool registered = register_command(
    {"bisect", "find the first diverging layer, stage and token; shrink the trace to a minimal reproducer", run_bisect});

}  // namespace
}  // namespace moesim::cli
