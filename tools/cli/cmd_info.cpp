// moesim info TRACE: what a trace holds, after full validation.
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "command.hpp"
#include "options.hpp"
#include "trace_io.hpp"

namespace moesim::cli {
namespace {

// A real number as the shortest text that reads back to it.
std::string fmt_number(double v) {
  std::ostringstream o;
  o << std::setprecision(17) << v;
  std::ostringstream s;
  s << v;
  return std::stod(s.str()) == v ? s.str() : o.str();
}

std::string spec_text(const GeneratorSpec& s) {
  std::ostringstream o;
  o << "seed " << s.seed << ", " << s.distribution << ", scale " << s.scale;
  return o.str();
}

int run_info(const std::vector<std::string>& args) {
  po::options_description desc("Exit 0: done; 2: bad input (one line naming the file, nothing written).\n\noptions");
  desc.add_options()("trace", po::value<std::string>()->required(), "trace file");
  po::positional_options_description pos;
  pos.add("trace", 1);
  po::variables_map vm;
  if (!parse_options("info", "TRACE", desc, pos, args, vm)) return 0;
  ReadReport report;  // a full read: info shows only what validate accepts
  const Trace t = read_trace(vm["trace"].as<std::string>(), {}, &report);
  const TraceConfig& c = t.config;
  // An explicit map may place unequal numbers of experts on the ranks: show the range.
  std::vector<int> per_rank(c.num_ranks, 0);
  for (int e = 0; e < c.num_experts; ++e) ++per_rank[c.rank_of(e)];
  const auto [fewest, most] = std::minmax_element(per_rank.begin(), per_rank.end());
  const std::string per_rank_text =
      *fewest == *most ? std::to_string(*most) : std::to_string(*fewest) + " to " + std::to_string(*most);
  std::cout << t.path << ": moesim trace, schema v" << t.schema_version << "\n"
            << "  ranks " << c.num_ranks << ", experts " << c.num_experts << " (" << per_rank_text
            << " per rank, placement " << name(c.placement.kind) << "), top-" << c.top_k << "\n"
            << "  hidden " << c.hidden << ", intermediate " << c.intermediate << ", activation " << name(c.activation)
            << (c.activation == Activation::swiglu_oai
                    ? " (alpha " + fmt_number(c.swiglu_alpha) + ", limit " + fmt_number(c.swiglu_limit) + ")"
                    : std::string())
            << "\n  tokens " << name(c.token_dtype) << ", weights " << name(c.weight_dtype)
            << (t.layers.empty() || t.layers[0].weights ? " (stored)" : " (generated from seed)") << "\n"
            << "  layers " << t.layers.size() << "\n";
  if (c.placement.kind == PlacementKind::eplb) std::cout << "  logical experts " << c.placement.num_logical << "\n";
  if (c.num_shared_experts > 0)
    std::cout << "  shared experts " << c.num_shared_experts << " (intermediate " << c.shared_intermediate
              << (c.shared_expert_gate ? ", gated per token by sigmoid(x . shared_gate)" : "") << ")\n";
  if (c.expert_bias) std::cout << "  expert biases after both projections\n";
  if (c.routed_scaling_factor != 1.0)
    std::cout << "  routed scaling factor " << c.routed_scaling_factor
              << (c.topk_weights_include_scaling ? " (already in topk_weights)" : "") << "\n";
  if (!c.library.empty()) std::cout << "  captured from " << c.library << " " << c.library_version << "\n";
  if (!t.layers.empty() && !t.layers[0].weights) std::cout << "  weight generator: " << spec_text(t.weight_spec) << "\n";
  if (t.x_spec) std::cout << "  x generator: " << spec_text(*t.x_spec) << "\n";

  // Routing at a glance: token counts, -1 slots and how unevenly experts and ranks are loaded.
  std::int64_t tmin = INT64_MAX, tmax = 0, slots = 0, sentinels = 0, captured = 0;
  std::vector<std::int64_t> expert_load(c.num_experts, 0), rank_load(c.num_ranks, 0);
  for (const auto& layer : t.layers)
    for (const auto& r : layer.ranks) {
      tmin = std::min(tmin, r.num_tokens);
      tmax = std::max(tmax, r.num_tokens);
      if (!r.captured.empty()) ++captured;
      for (std::int32_t id : r.topk_ids) {
        ++slots;
        if (id < 0) {
          ++sentinels;
          continue;
        }
        ++expert_load[id];
        ++rank_load[c.rank_of(id)];
      }
    }
  const auto ratio = [](const std::vector<std::int64_t>& v) {
    std::int64_t sum = 0, mx = 0;
    for (auto x : v) sum += x, mx = std::max(mx, x);
    return sum ? static_cast<double>(mx) * static_cast<double>(v.size()) / static_cast<double>(sum) : 0.0;
  };
  if (!t.layers.empty())
    std::cout << "  tokens per rank " << tmin << (tmin == tmax ? "" : ".." + std::to_string(tmax)) << "; " << slots
              << " slots, " << sentinels << " of them -1\n"
              << std::fixed << std::setprecision(2) << "  load max/mean: expert " << ratio(expert_load) << ", rank "
              << ratio(rank_load) << "\n";
  if (captured) std::cout << "  captured receive side on " << captured << " (layer, rank) pairs\n";
  if (!t.command.empty()) std::cout << "  made by: " << t.command << "\n";
  for (const auto& w : report.warnings) std::cout << "  warning: " << w << "\n";
  if (!report.more().empty()) std::cout << "  warning: " << report.more() << "\n";
  return 0;
}

const bool registered = register_command({"info", "describe a trace", run_info});

}  // namespace
}  // namespace moesim::cli
