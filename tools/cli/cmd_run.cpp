// moesim run TRACE: replay a trace's routing across its virtual ranks with a library's dispatch
// model, an expert-side consumer and a combine model; print statistics and how the result
// compares with the reference; optionally write every stage to a run file. Exit 0 when the final
// output agrees with the reference (every element within the rounding bound) or nothing was
// compared, 1 when it does not, 2 on bad input.
#include <cstdio>
#include <iostream>
#include <thread>

#include "agreement.hpp"
#include "backend_choice.hpp"
#include "capture_check.hpp"
#include "command.hpp"
#include "error.hpp"
#include "expert_side.hpp"
#include "identity_check.hpp"
#include "options.hpp"
#include "output_path.hpp"
#include "report.hpp"
#include "run_file.hpp"
#include "trace_io.hpp"

namespace moesim::cli {
namespace {

using namespace moesim::sim;


std::string joined(const std::vector<std::string>& args) {
  std::string s = "moesim run";
  for (const auto& a : args) s += " " + a;
  return s;
}

int run_run(const std::vector<std::string>& args) {
  po::options_description desc(
      "Compares the final output with the CPU reference model in the same numerics: it matches when\n"
      "every element is within the rounding bound of reference/NUMERICS.md (\"How far two results may\n"
      "differ\"), the verdict diff, bisect and diagnose give too.\n"
      "With --consumer identity, the combine check of the library's own tests instead.\n"
      "Exit 0: it matches, or nothing was compared (--no-reference, --routing-only); 1: it does not;\n"
      "2: bad input.\n\n"
      "options");
  desc.add_options()
      ("trace", po::value<std::string>()->required(), "trace file")
      ("output,o", po::value<std::string>(), "write the run file (every stage per rank, /stats; only /stats with --routing-only) here; without -o nothing is written")
      ("dispatch", po::value<std::string>(), "mori | deepep-ht | deepep-ll | pplx | pairs (default: the trace's library, else mori)")
      ("consumer", po::value<std::string>(), "aiter-mask | deepep-local | per-expert | all-k | dedup-filter | target-expert | identity (experts return their input; run then applies the library's combine check) (default: what a correct integration of the dispatch uses)")
      ("combine", po::value<std::string>(), "rank-sum | weighted | internode-v1 | pair-sum (default: as --consumer)")
      ("numerics", po::value<std::string>(), "exact | fp32 | bf16 | fp8 | hf-bf16 (default: fp32 for f32 tokens, fp8 for fp8 tokens, else bf16)")
      ("fp8-format", po::value<std::string>()->default_value("float8_e4m3fn"), "fp8 mode: float8_e4m3fn or float8_e4m3fnuz")
      ("deepep-version", po::value<std::string>(), "deepep-ht rank-sum order: v1 (legacy kernels: ascending rank) or v2 (ElasticBuffer: each rank's last slot) (default: the trace's library_settings deepep_version, else v1)")
      ("combine-quant", po::value<std::string>(), "mori rank-sum: MORI's combine quantization none | fp8_direct_cast | fp8_blockwise, in --fp8-format's fp8 (default: the trace's library_settings quant_type, else none)")
      ("combine-scale-dim", po::value<int>()->default_value(56), "fp8_blockwise: blocks per row (MORI_FP8_COMBINE_SCALE_DIM)")
      ("src-pos-encoding", po::value<std::string>()->default_value("flat"), "mori src_token_pos: flat (HEAD) or legacy (before 2026-04)")
      ("negative-ids", po::value<std::string>()->default_value("skip"), "mori -1 ids: skip, or rank0 (the old truncation)")
      ("overflow", po::value<std::string>()->default_value("error"), "receive overflow: error, or drop (silent, mori issue 356)")
      ("max-tokens", po::value<std::int64_t>(), "per-rank token capacity (mori max_num_inp_token_per_rank, deepep-ll slots per (expert, source rank); default: the trace's, else the largest rank)")
      ("max-total-recv", po::value<std::int64_t>(), "mori max_total_recv_tokens (default: the trace's)")
      ("shuffle-seed", po::value<std::uint64_t>(), "permute received rows where the library leaves their order to arrival: mori/pairs the whole buffer, deepep-ht inside each source rank's block, deepep-ll the source ranges and rows inside them, pplx inside each expert (default: canonical order)")
      ("non-local", po::value<std::string>()->default_value("wrap"), "all-k: non-local ids wrap, clamp or mask")
      ("whole-buffer", po::bool_switch(), "aiter-mask/all-k read the whole receive buffer, not the first total_recv rows")
      ("ids", po::value<std::string>()->default_value("physical"), "trace ids are physical, or logical (eplb: a replica is picked)")
      ("replica", po::value<std::string>()->default_value("round-robin"), "logical ids: first | round-robin | same-rank")
      ("routing-only", po::bool_switch(), "statistics only, no tensors (fast; prints pairs per second)")
      ("layer", po::value<int>(), "only this layer (default: all)")
      ("per-rank", po::bool_switch(), "print per-rank counts")
      ("no-reference", po::bool_switch(), "skip the comparison with the reference")
      ("backend", po::value<std::string>()->default_value("cpu"), kBackendHelp)
      ("threads", po::value<int>()->default_value(static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))), "threads for the expert math and the routing statistics (results do not depend on it)");
  po::positional_options_description pos;
  pos.add("trace", 1);
  po::variables_map vm;
  if (!parse_options("run", "TRACE [options]", desc, pos, args, vm)) return 0;

  const bool routing_only = vm["routing-only"].as<bool>();
  if (vm.count("output")) check_output_path(vm["output"].as<std::string>(), {vm["trace"].as<std::string>()});
  ReadOptions ro;
  ro.tensors = !routing_only;
  ro.captured = !routing_only;
  const Trace trace = read_trace(vm["trace"].as<std::string>(), ro);
  const TraceConfig& c = trace.config;

  SimOptions o;
  o.dispatch.model = vm.count("dispatch") ? parse_dispatch(vm["dispatch"].as<std::string>()) : default_dispatch(c);
  o.consumer.model = vm.count("consumer") ? parse_consumer(vm["consumer"].as<std::string>()) : default_consumer(o.dispatch.model);
  o.combine = vm.count("combine") ? parse_combine(vm["combine"].as<std::string>()) : default_combine(o.dispatch.model, c.mori.kernel_type);
  o.numerics = backend_numerics(vm["backend"].as<std::string>(),
                                vm.count("numerics") ? std::optional(parse_numerics(vm["numerics"].as<std::string>()))
                                                     : std::nullopt,
                                default_numerics(c.token_dtype));
  o.fp8_format = parse_dtype(vm["fp8-format"].as<std::string>());
  if (!is_fp8(o.fp8_format)) throw UsageError("--fp8-format must be float8_e4m3fn or float8_e4m3fnuz");
  o.deepep_version = vm.count("deepep-version") ? parse_deepep_version(vm["deepep-version"].as<std::string>())
                                                 : default_deepep_version(trace);
  if (vm.count("combine-quant")) {
    o.combine_quant.type = parse_combine_quant(vm["combine-quant"].as<std::string>());
  } else if (o.dispatch.model == DispatchModel::mori && o.combine == CombineModel::rank_sum) {
    const auto it = c.library_settings.find("quant_type");
    if (it != c.library_settings.end()) try {
        o.combine_quant.type = parse_combine_quant(it->second);
      } catch (const Error& e) {
        throw Error(where(trace.path, "/config/library_settings") + e.what());
      }
  }
  o.combine_quant.fp8 = o.fp8_format;
  o.combine_quant.scale_dim = vm["combine-scale-dim"].as<int>();
  check_combine_quant(o, c.hidden);  // before any work
  o.dispatch.encoding = parse_src_pos_encoding(vm["src-pos-encoding"].as<std::string>());
  if (o.dispatch.encoding == SrcPosEncoding::pair) throw UsageError("--src-pos-encoding is flat or legacy");
  const std::string neg = vm["negative-ids"].as<std::string>();
  if (neg != "skip" && neg != "rank0") throw UsageError("--negative-ids is skip or rank0");
  o.dispatch.negative = neg == "rank0" ? NegativeIds::rank0 : NegativeIds::skip;
  const std::string ovf = vm["overflow"].as<std::string>();
  if (ovf != "error" && ovf != "drop") throw UsageError("--overflow is error or drop");
  o.dispatch.overflow = ovf == "drop" ? Overflow::drop : Overflow::error;
  o.dispatch.max_tokens_per_rank = vm.count("max-tokens") ? vm["max-tokens"].as<std::int64_t>() : c.mori.max_num_inp_token_per_rank;
  o.dispatch.max_total_recv = vm.count("max-total-recv") ? vm["max-total-recv"].as<std::int64_t>() : c.mori.max_total_recv_tokens;
  if (o.dispatch.max_tokens_per_rank < 0 || o.dispatch.max_total_recv < 0) throw UsageError("capacities must be positive");
  if (vm.count("shuffle-seed")) {
    o.dispatch.shuffle = true;
    o.dispatch.shuffle_seed = vm["shuffle-seed"].as<std::uint64_t>();
  }
  o.consumer.non_local = parse_non_local(vm["non-local"].as<std::string>());
  o.consumer.whole_buffer = vm["whole-buffer"].as<bool>();
  const std::string ids = vm["ids"].as<std::string>();
  if (ids != "physical" && ids != "logical") throw UsageError("--ids is physical or logical");
  o.logical_ids = ids == "logical";
  o.replica = parse_replica_policy(vm["replica"].as<std::string>());
  o.threads = std::max(1, vm["threads"].as<int>());

  std::vector<int> layers;
  if (vm.count("layer")) {
    const int l = vm["layer"].as<int>();
    if (l < 0 || l >= static_cast<int>(trace.layers.size()))
      throw Error(where(trace.path, "/layers") + "layer " + std::to_string(l) + " out of range (" +
                  std::to_string(trace.layers.size()) + " layers)");
    if (vm.count("output") && !routing_only) throw UsageError("-o writes every layer; drop --layer");
    layers.push_back(l);
  } else {
    for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) layers.push_back(l);
  }

  const ExpertMap map = make_expert_map(c);
  const PairingVerdict verdict = judge_pairing(o.dispatch.model, o.consumer, o.combine);
  std::cout << trace.path << ": " << c.num_ranks << " ranks, " << c.num_experts << " experts, top-" << c.top_k
            << ", hidden " << c.hidden << ", " << name(c.token_dtype) << " tokens, numerics " << name(o.numerics) << "\n";
  print_pairing(std::cout, o, verdict);

  RunDescription description;
  description.options = o;
  description.verdict = verdict;
  description.command = joined(args);
  if (routing_only) {
    std::vector<RoutingStats> all;
    std::vector<int> indices;
    for (int l : layers) {
      const auto sources = layer_sources(trace, l, map, o);
      StatsInput si = stats_input(c, map, o);
      si.threads = o.threads;
      all.push_back(routing_stats(si, sources));
      indices.push_back(trace.layers[l].index);
      const RoutingStats& s = all.back();
      std::cout << "layer " << trace.layers[l].index << " (routing only)\n";
      print_stats(std::cout, s, vm["per-rank"].as<bool>());
      char rate[96];
      std::snprintf(rate, sizeof rate, "  routed %lld pairs in %.3f s: %.1f M pairs/s\n", static_cast<long long>(s.pairs),
                    s.seconds, static_cast<double>(s.pairs) / std::max(s.seconds, 1e-9) / 1e6);
      std::cout << rate;
    }
    if (vm.count("output")) {
      write_routing_only(vm["output"].as<std::string>(), trace, all, indices, description);
      std::cout << "wrote " << vm["output"].as<std::string>() << "\n";
    }
    return 0;
  }

  const WeightProvider weights(trace);
  const auto backend = make_backend(vm["backend"].as<std::string>(), trace, weights, o.threads);
  o.backend = backend.get();
  description.backend = backend ? backend->name() : "cpu";
  // The reference reads ids as physical: hand it the replicas this run picked.
  const Trace physical = o.logical_ids ? with_physical_ids(trace, map, o) : Trace{};
  const Trace& ref_trace = o.logical_ids ? physical : trace;
  const WeightProvider ref_weights(ref_trace);
  std::vector<LayerRun> runs;
  bool all_agree = true;
  // Identity experts are judged by the library's own combine check, not against the reference.
  const bool identity = o.consumer.model == ConsumerModel::identity;
  for (int l : layers) {
    runs.push_back(simulate_layer(trace, l, weights, map, o));
    const LayerRun& run = runs.back();
    std::cout << "layer " << run.layer_index << "\n";
    print_stats(std::cout, run.stats, vm["per-rank"].as<bool>());
    if (identity) {
      const IdentityCheck ck = check_identity(trace, l, map, run, o);
      all_agree = all_agree && ck.passes;
      std::cout << "  identity experts: combine_out vs " << ck.expectation << ": calc_diff " << ck.calc_diff
                << ", max |diff| " << ck.max_abs << ", " << ck.bad_tokens << " of " << ck.tokens
                << " tokens past MORI's allclose; " << ck.bar << ": " << (ck.passes ? "passes" : "FAILS") << "\n";
    } else if (!vm["no-reference"].as<bool>()) {
      ReferenceOptions rop;
      rop.numerics = o.numerics;
      rop.fp8_format = o.fp8_format;
      rop.threads = o.threads;
      // The backend reads only token rows and weights, which the physical-id copy shares.
      rop.backend = o.backend;
      const LayerOutputs ref = run_layer(ref_trace, l, ref_weights, rop);
      const Agreement a = compare_final(run, ref, trace, l, o.numerics, o.combine);
      all_agree = all_agree && a.agrees();
      std::cout << "  final output vs reference (" << name(o.numerics) << "): "
                << (a.agrees() ? "matches: " : "WRONG on " + std::to_string(a.bad_tokens) + " of " +
                                                   std::to_string(a.tokens) + " tokens: ")
                << a.verdict() << "; max |diff| " << a.max_abs << "\n";
    }
    const auto checks = check_captures(trace, l, map, o.dispatch);
    if (!checks.empty()) std::cout << "  captured receive buffers, checked against each dispatch model:\n";
    for (const auto& ck : checks) print_capture_check(std::cout, ck);
  }
  if (backend) std::cout << backend->profile() << "\n";
  if (vm.count("output")) {
    write_run(vm["output"].as<std::string>(), trace, runs, description);
    std::cout << "wrote " << vm["output"].as<std::string>() << "\n";
  }
  if (identity) {
    std::cout << (all_agree ? "result: identity experts pass the library's combine check"
                            : "result: identity experts FAIL the library's combine check") << "\n";
    return all_agree ? 0 : 1;
  }
  if (vm["no-reference"].as<bool>()) return 0;
  std::cout << (all_agree ? "result: matches the reference" : "result: DISAGREES with the reference") << "\n";
  return all_agree ? 0 : 1;
}

const bool registered =
    register_command({"run", "simulate a trace across virtual ranks (dispatch x consumer x combine)", run_run});

}  // namespace
}  // namespace moesim::cli
