// moesim gen -o FILE [options]: writes a synthetic trace; the same arguments give the same bytes.
#include <iostream>

#include "command.hpp"
#include "error.hpp"
#include "generate.hpp"
#include "options.hpp"
#include "output_path.hpp"
#include "trace_io.hpp"

namespace moesim::cli {
namespace {

// The command line as a shell would retype it, so the trace records how to remake itself.
std::string command_text(const std::vector<std::string>& args) {
  std::string out = "moesim gen";
  for (const auto& a : args) {
    const bool plain = !a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                         "0123456789-_.,/:=+") == std::string::npos;
    out += " ";
    if (plain) {
      out += a;
    } else {
      out += "'";
      for (char ch : a) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      out += "'";
    }
  }
  return out;
}

bool stored(const std::string& opt, const std::string& v) {
  if (v == "stored") return true;
  if (v == "seed") return false;
  throw UsageError("--" + opt + " must be 'stored' or 'seed', got '" + v + "'");
}

int run_gen(const std::vector<std::string>& args) {
  GenOptions o;
  std::string out, activation = "silu_and_mul", token_dtype = "bf16", weight_dtype = "bf16", routing = "uniform";
  std::string scoring = "softmax", placement = "contiguous", weights = "seed", x = "stored";
  std::uint64_t weight_seed = 0, x_seed = 0;
  po::options_description desc("Exit 0: done; 2: bad input (one line naming the file, nothing written).\n\noptions");
  desc.add_options()
      ("output,o", po::value(&out)->required(), "trace file to write")
      ("seed", po::value(&o.seed)->default_value(o.seed), "seed of everything random")
      ("ranks", po::value(&o.num_ranks)->default_value(o.num_ranks), "ranks R")
      ("experts", po::value(&o.num_experts)->default_value(o.num_experts), "physical experts E (a multiple of R)")
      ("top-k", po::value(&o.top_k)->default_value(o.top_k), "experts per token K")
      ("hidden", po::value(&o.hidden)->default_value(o.hidden), "hidden size H")
      ("intermediate", po::value(&o.intermediate)->default_value(o.intermediate), "expert intermediate size I")
      ("layers", po::value(&o.num_layers)->default_value(o.num_layers), "layers")
      ("tokens", po::value(&o.tokens_per_rank)->default_value(o.tokens_per_rank), "tokens per rank")
      ("tokens-max", po::value(&o.tokens_max)->default_value(0),
       "when above --tokens, each rank's count is uniform in [tokens, tokens-max]")
      ("activation", po::value(&activation)->default_value(activation),
       "silu_and_mul, gelu_and_mul, gelu_tanh_and_mul, swiglu_oai_and_mul (GPT-OSS: alpha 1.702, limit 7), silu, gelu, "
       "gelu_tanh")
      ("token-dtype", po::value(&token_dtype)->default_value(token_dtype), "fp32, bf16, fp8 (e4m3fn), fp8_fnuz")
      ("weight-dtype", po::value(&weight_dtype)->default_value(weight_dtype), "fp32 or bf16")
      ("scale-block", po::value(&o.scale_block)->default_value(o.scale_block), "fp8 tokens: elements per scale")
      ("routing", po::value(&routing)->default_value(routing),
       "uniform, zipf, grouped, hot, all_to_one, round_robin, spread")
      ("zipf", po::value(&o.zipf_s)->default_value(o.zipf_s, "1.0"), "zipf routing: exponent s")
      ("groups", po::value(&o.n_group)->default_value(o.n_group), "grouped routing: n_group")
      ("topk-groups", po::value(&o.topk_group)->default_value(o.topk_group), "grouped routing: topk_group")
      ("hot", po::value(&o.num_hot)->default_value(o.num_hot), "hot routing: number of hot experts")
      ("hot-factor", po::value(&o.hot_factor)->default_value(o.hot_factor, "10"),
       "hot routing: how much likelier a hot expert is")
      ("sentinel-rate", po::value(&o.sentinel_rate)->default_value(0.0, "0"),
       "probability that a slot is -1 (weight 0)")
      ("scoring", po::value(&scoring)->default_value(scoring), "topk_weights from softmax or sigmoid scores")
      ("no-normalize", po::bool_switch(), "keep the K weights as scored instead of summing them to 1")
      ("placement", po::value(&placement)->default_value(placement), "contiguous, explicit (seeded shuffle), eplb")
      ("logical", po::value(&o.num_logical)->default_value(0), "eplb: logical experts (default E/2)")
      ("shared-experts", po::value(&o.num_shared_experts)->default_value(0), "shared experts")
      ("shared-intermediate", po::value(&o.shared_intermediate)->default_value(0),
       "shared expert intermediate size (default I)")
      ("routed-scaling", po::value(&o.routed_scaling_factor)->default_value(1.0, "1.0"), "routed scaling factor")
      ("mori-max-tokens", po::value(&o.mori_max_tokens)->default_value(0),
       "MORI max_num_inp_token_per_rank (default: the largest rank's count)")
      ("weights", po::value(&weights)->default_value(weights), "expert weights 'stored' in the file or 'seed'")
      ("x", po::value(&x)->default_value(x), "input tokens 'stored' in the file or 'seed'")
      ("weight-dist", po::value(&o.weight_spec.distribution)->default_value(o.weight_spec.distribution),
       "uniform or normal")
      ("weight-scale", po::value(&o.weight_spec.scale)->default_value(1.0, "1.0"),
       "weights have standard deviation scale/sqrt(fan_in)")
      ("weight-seed", po::value(&weight_seed), "seed of the weights (default --seed)")
      ("x-dist", po::value(&o.x_spec.distribution)->default_value(o.x_spec.distribution), "uniform or normal")
      ("x-scale", po::value(&o.x_spec.scale)->default_value(1.0, "1.0"), "standard deviation of x")
      ("x-seed", po::value(&x_seed), "seed of x (default --seed)");
  po::variables_map vm;
  if (!parse_options("gen", "-o FILE [options]", desc, {}, args, vm)) return 0;
  check_output_path(out, {});
  o.activation = parse_activation(activation);
  o.token_dtype = parse_dtype(token_dtype);
  o.weight_dtype = parse_dtype(weight_dtype);
  o.routing = parse_routing(routing);
  o.scoring = parse_scoring(scoring);
  o.normalize = !vm["no-normalize"].as<bool>();
  o.placement = parse_placement(placement);
  o.store_weights = stored("weights", weights);
  o.store_x = stored("x", x);
  if (vm.count("weight-seed")) o.weight_seed = weight_seed;
  if (vm.count("x-seed")) o.x_seed = x_seed;
  Trace t = generate(o);
  t.command = command_text(args);
  write_trace(t, out);
  std::int64_t tokens = 0;
  for (const auto& r : t.layers[0].ranks) tokens += r.num_tokens;
  std::cout << "wrote " << out << ": " << o.num_ranks << " ranks, " << o.num_experts << " experts, top-" << o.top_k
            << ", " << t.layers.size() << " layer(s), " << tokens << " tokens per layer, routing " << routing << "\n";
  return 0;
}

const bool registered = register_command({"gen", "write a synthetic trace", run_gen});

}  // namespace
}  // namespace moesim::cli
