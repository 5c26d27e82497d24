// Injected faults for moesim bisect: a corruption of one source token entering at one stage
// and carried downstream, applied to a simulated layer after the fact.
#include <sstream>

#include "bisect.hpp"
#include "error.hpp"

namespace moesim::sim {

namespace {
void add(Values& v, std::size_t begin, std::size_t count, double delta) {
  for (std::size_t i = begin; i < begin + count && i < v.size(); ++i) {
    if (v.wide) v.f64[i] += delta;
    else v.f32[i] = static_cast<float>(v.f32[i] + delta);
  }
}

diff::Stage parse_stage(const std::string& s) {
  if (s == "dispatch") return diff::Stage::dispatch;
  if (s == "expert") return diff::Stage::expert;
  if (s == "combine") return diff::Stage::combine;
  if (s == "final") return diff::Stage::final_;
  throw Error("--inject: unknown stage '" + s + "' (dispatch, expert, combine or final)");
}
}  // namespace

Fault parse_fault(const std::string& spec) {
  std::vector<std::string> parts;
  std::stringstream ss(spec);
  for (std::string p; std::getline(ss, p, ',');) parts.push_back(p);
  if (parts.size() != 4 && parts.size() != 5) throw Error("--inject " + spec + ": expected LAYER,STAGE,RANK,TOKEN[,DELTA]");
  Fault f;
  try {
    std::size_t used = 0;
    f.layer = std::stoi(parts[0], &used);
    if (used != parts[0].size()) throw std::invalid_argument("layer");
    f.stage = parse_stage(parts[1]);
    f.rank = std::stoi(parts[2], &used);
    if (used != parts[2].size()) throw std::invalid_argument("rank");
    f.token = std::stoll(parts[3], &used);
    if (used != parts[3].size()) throw std::invalid_argument("token");
    if (parts.size() == 5) f.delta = std::stod(parts[4]);
  } catch (const std::logic_error&) {
    throw Error("--inject " + spec + ": expected LAYER,STAGE,RANK,TOKEN[,DELTA] with integers");
  }
  if (f.layer < 0 || f.rank < 0 || f.token < 0) throw Error("--inject " + spec + ": negative index");
  return f;
}

std::string fault_text(const Fault& f) {
  std::ostringstream s;
  s << f.layer << "," << name(f.stage) << "," << f.rank << "," << f.token << "," << f.delta;
  return s.str();
}

// origin[r][t]: the original (rank, token) of local token t on rank r.
void apply_fault(LayerRun& run, const Fault& f, const RankOrigin& origin, int hidden, int top_k) {
  int rank = -1;
  std::int64_t local = -1;
  for (std::size_t r = 0; r < origin.size(); ++r)
    for (std::size_t t = 0; t < origin[r].size(); ++t)
      if (origin[r][t] == TokenId{f.rank, f.token}) rank = static_cast<int>(r), local = static_cast<std::int64_t>(t);
  if (local < 0) return;
  const auto H = static_cast<std::size_t>(hidden), K = static_cast<std::size_t>(top_k);
  const auto t = static_cast<std::size_t>(local);
  const int stage = static_cast<int>(f.stage);
  if (stage <= static_cast<int>(diff::Stage::dispatch)) {
    for (std::size_t d = 0; d < run.dispatch.ranks.size(); ++d) {
      RecvBuffer& b = run.dispatch.ranks[d];
      for (std::size_t i = 0; i < b.src_rank.size(); ++i) {
        if (b.src_rank[i] != rank || b.src_token[i] != local) continue;
        for (std::size_t k = 0; k < K; ++k) b.weights[i * K + k] += static_cast<float>(f.delta);
        add(run.ranks[d].expert_rows, i * H, H, f.delta);
      }
    }
  }
  RankRun& r = run.ranks[static_cast<std::size_t>(rank)];
  if (stage <= static_cast<int>(diff::Stage::expert)) add(r.expert_out, t * K * H, K * H, f.delta);
  if (stage <= static_cast<int>(diff::Stage::combine)) add(r.combine_out, t * H, H, f.delta);
  add(r.final_out, t * H, H, f.delta);
}

}  // namespace moesim::sim
