// moesim diagnose TRACE: which known integration bug explains a captured trace. Exit codes follow
// what the evidence supports (sim::exit_code): 0 consistent, outputs included; 1 a bug model
// explains it, or the correct integration does not; 2 error; 3 buffers consistent, consumer not
// tested; 4 undecided.
#include <iostream>
#include <sstream>
#include <thread>

#include "backend_choice.hpp"
#include "command.hpp"
#include "diagnose.hpp"
#include "error.hpp"
#include "options.hpp"
#include "trace_io.hpp"

namespace moesim::cli {
namespace {

using namespace moesim::sim;

int run_diagnose(const std::vector<std::string>& args) {
  po::options_description desc(
      "First what the receive rows say on their own: a whole receive buffer held without total_recv (its\n"
      "row count is then not compared), stale rows (all zeros, no local expert, an identical block at the\n"
      "tail), the id space from the ids' range and the dispatch models it allows, identical rows against\n"
      "the local experts their ids name (more copies than that rules out per-(token, expert) duplication),\n"
      "and, with the source routing but no src_token_pos, each row matched to its source tokens by content.\n"
      "Then structural checks of the captured receive buffers (row count against total_recv and the buffer\n"
      "size, decodable and unique src_token_pos, rows equal to their decoded sources, identical rows\n"
      "with distinct sources), then a catalog of bug models, each a simulator configuration, ranked by\n"
      "how many captured observations (row counts, row sources, ids and weights, recv_x, per-row expert\n"
      "outputs, stale rows past total_recv, combine_out, final_out) it leaves unexplained, then by\n"
      "relative L2 (calc_diff is reported too). A numeric observation is explained when every element is\n"
      "within the rounding bound of reference/NUMERICS.md, the verdict run, diff and bisect give.\n"
      "Catalog: correct; weights-twice; weights-never;\n"
      "all-k-wrap/clamp (the seed's consumer); seed-all-k-wrap/clamp/mask (per-(token, expert) rows);\n"
      "whole-buffer and seed-all-k-wrap-whole-buffer; global-as-local; local-as-global;\n"
      "minus-one-to-rank0 (old MORI); silent-overflow (mori 356); combine-recv-ids (mori 475);\n"
      "rows-duplicated-or-dropped (mori 507, fitted); warmup-identical-tokens (fitted).\n"
      "A capture without outputs ranks only the models that change the buffers; one without source routing\n"
      "(every rank with 0 tokens) gets the deductions alone. When the evidence cannot decide, the report\n"
      "lists what to capture next (tensor, library call, shape).\n"
      "Exit 0: consistent with the correct integration, the consumer's outputs included; 1: a bug model\n"
      "explains the capture, or the correct integration leaves observations unexplained; 2: error;\n"
      "3: the buffers are consistent with the correct integration but the consumer was not tested (no\n"
      "outputs captured); 4: undecided (no source routing, or no observation could be compared).\n\n"
      "options");
  desc.add_options()
      ("trace", po::value<std::string>()->required(), "captured trace file")
      ("dispatch", po::value<std::string>(), "the library's dispatch: mori | deepep-ht | deepep-ll | pplx | pairs (default: the trace's library, else mori)")
      ("numerics", po::value<std::string>(), "exact | fp32 | bf16 | fp8 (default: fp32 for f32 tokens, fp8 for fp8 tokens, else bf16)")
      ("fp8-format", po::value<std::string>()->default_value("float8_e4m3fn"), "fp8 mode: float8_e4m3fn or float8_e4m3fnuz")
      ("max-tokens", po::value<std::int64_t>(), "per-rank token capacity positions were encoded with (default: the trace's, else the largest rank)")
      ("tolerance", po::value<double>(), "relative L2 under which a numeric observation counts as explained, instead of the rounding bound (which leaves stale rows to relative L2 1e-9 exact, 1e-5 fp32, 1e-2 bf16/fp8)")
      ("ids", po::value<std::string>()->default_value("physical"), "trace ids are physical, or logical (eplb: a replica is picked)")
      ("replica", po::value<std::string>()->default_value("round-robin"), "logical ids: first | round-robin | same-rank")
      ("only", po::value<std::string>(), "evaluate only these hypotheses (comma-separated keys) besides the correct integration")
      ("layer", po::value<int>(), "only this layer (position in the trace; default: all)")
      ("top", po::value<int>()->default_value(3), "print the evidence of this many best hypotheses")
      ("json", po::bool_switch(), "print the result as JSON instead of text")
      ("backend", po::value<std::string>()->default_value("cpu"), kBackendHelp)
      ("threads", po::value<int>()->default_value(static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))), "threads for the expert math (results do not depend on it)");
  po::positional_options_description pos;
  pos.add("trace", 1);
  po::variables_map vm;
  if (!parse_options("diagnose", "TRACE [options]", desc, pos, args, vm)) return 0;

  const Trace trace = read_trace(vm["trace"].as<std::string>());
  const TraceConfig& c = trace.config;
  DiagnoseOptions o;
  if (vm.count("dispatch")) {
    o.base.dispatch.model = parse_dispatch(vm["dispatch"].as<std::string>());
    o.library_set = true;
  }
  o.base.numerics = backend_numerics(
      vm["backend"].as<std::string>(),
      vm.count("numerics") ? std::optional(parse_numerics(vm["numerics"].as<std::string>())) : std::nullopt,
      default_numerics(c.token_dtype));
  o.base.fp8_format = parse_dtype(vm["fp8-format"].as<std::string>());
  if (!is_fp8(o.base.fp8_format)) throw UsageError("--fp8-format must be float8_e4m3fn or float8_e4m3fnuz");
  o.base.dispatch.max_tokens_per_rank = vm.count("max-tokens") ? vm["max-tokens"].as<std::int64_t>() : c.mori.max_num_inp_token_per_rank;
  if (o.base.dispatch.max_tokens_per_rank < 0) throw UsageError("--max-tokens must be positive");
  if (vm.count("tolerance")) {
    o.tolerance = vm["tolerance"].as<double>();
    if (!(o.tolerance >= 0)) throw UsageError("--tolerance must be a non-negative number");
  }
  if (vm.count("layer")) o.layer = vm["layer"].as<int>();
  const std::string ids = vm["ids"].as<std::string>();
  if (ids != "physical" && ids != "logical") throw UsageError("--ids is physical or logical");
  o.base.logical_ids = ids == "logical";
  o.base.replica = parse_replica_policy(vm["replica"].as<std::string>());
  if (vm.count("only")) {
    std::stringstream list(vm["only"].as<std::string>());
    for (std::string k; std::getline(list, k, ',');)
      if (!k.empty()) o.only.push_back(k);
  }
  o.base.threads = std::max(1, vm["threads"].as<int>());

  // Every hypothesis runs its expert FFNs here; each (token, expert) product once (diagnose_products.hpp).
  const WeightProvider weights(trace);
  const auto backend = make_backend(vm["backend"].as<std::string>(), trace, weights, o.base.threads);
  o.base.backend = backend.get();
  const Diagnosis d = diagnose(trace, o);
  if (vm["json"].as<bool>())
    print_diagnosis_json(std::cout, trace, d);
  else
    print_diagnosis(std::cout, trace, d, std::max(0, vm["top"].as<int>()));
  return exit_code(d.verdict());
}

const bool registered =
    register_command({"diagnose", "rank known integration bugs by how well they explain a captured trace", run_diagnose});

}  // namespace
}  // namespace moesim::cli
