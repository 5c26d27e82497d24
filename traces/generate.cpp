#include "generate.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <exception>
#include <numeric>
#include <thread>
#include <vector>

#include "error.hpp"
#include "inputs.hpp"
#include "random.hpp"
#include "expert_weights.hpp"

namespace moesim {

namespace {
constexpr std::array<std::pair<Routing, std::string_view>, 7> kRoutings{{
    {Routing::uniform, "uniform"},
    {Routing::zipf, "zipf"},
    {Routing::grouped, "grouped"},
    {Routing::hot, "hot"},
    {Routing::all_to_one, "all_to_one"},
    {Routing::round_robin, "round_robin"},
    {Routing::spread, "spread"},
}};

// Stream keys of the generator's own randomness, apart from TensorKind's.
enum class GenKey : std::uint64_t { routing = 101, tokens = 102, popularity = 103, placement = 104 };

std::uint64_t key(GenKey k) { return static_cast<std::uint64_t>(k); }

// A seeded permutation of [0, n): sort by a random key per element (ties by index).
std::vector<int> permutation(std::uint64_t stream, int n) {
  std::vector<std::pair<std::uint64_t, int>> keyed(n);
  for (int i = 0; i < n; ++i) keyed[i] = {mix64(stream ^ mix64(static_cast<std::uint64_t>(i))), i};
  std::sort(keyed.begin(), keyed.end());
  std::vector<int> out(n);
  for (int i = 0; i < n; ++i) out[i] = keyed[i].second;
  return out;
}

// Standard Gumbel noise: top-k of log(p) + Gumbel samples k items without replacement with
// probability proportional to p, so every score-based pattern is one prior plus this noise.
double gumbel(std::uint64_t stream, std::uint64_t index) {
  const double u = uniform01(stream, index) + 0x1.0p-54;  // in (0, 1)
  return -std::log(-std::log(u));
}

[[noreturn]] void bad(const std::string& option, const std::string& what) {
  throw Error("--" + option + ": " + what);
}

void check_options(const GenOptions& o) {
  auto positive = [](const char* opt, long long v) {
    if (v < 1) bad(opt, "must be at least 1, got " + std::to_string(v));
  };
  positive("ranks", o.num_ranks);
  positive("experts", o.num_experts);
  positive("top-k", o.top_k);
  positive("hidden", o.hidden);
  positive("intermediate", o.intermediate);
  positive("layers", o.num_layers);
  positive("scale-block", o.scale_block);
  if (o.tokens_per_rank < 0) bad("tokens", "must not be negative");
  if (o.tokens_max != 0 && o.tokens_max < o.tokens_per_rank)
    bad("tokens-max", std::to_string(o.tokens_max) + " is below --tokens " + std::to_string(o.tokens_per_rank));
  if (o.num_experts % o.num_ranks != 0)
    bad("experts", std::to_string(o.num_experts) + " is not a multiple of --ranks " + std::to_string(o.num_ranks));
  if (o.top_k > o.num_experts || o.top_k > 64)
    bad("top-k", std::to_string(o.top_k) + " exceeds the number of experts or 64");
  if (o.token_dtype != DType::f32 && o.token_dtype != DType::bf16 && !is_fp8(o.token_dtype))
    bad("token-dtype", "must be fp32, bf16, fp8 or fp8_fnuz");
  if (o.weight_dtype != DType::f32 && o.weight_dtype != DType::bf16) bad("weight-dtype", "must be fp32 or bf16");
  if (!(o.sentinel_rate >= 0.0 && o.sentinel_rate <= 1.0)) bad("sentinel-rate", "must lie in [0, 1]");
  if (!(o.zipf_s >= 0.0 && std::isfinite(o.zipf_s))) bad("zipf", "must be a finite number >= 0");
  if (!(o.hot_factor > 0.0 && std::isfinite(o.hot_factor))) bad("hot-factor", "must be a finite number > 0");
  if (!(o.routed_scaling_factor >= 0.0 && o.routed_scaling_factor <= 1000.0)) bad("routed-scaling", "must lie in [0, 1000]");
  if (o.num_shared_experts < 0 || o.num_shared_experts > 64) bad("shared-experts", "must lie in [0, 64]");
  if (o.shared_intermediate < 0) bad("shared-intermediate", "must not be negative");
  if (o.mori_max_tokens < 0) bad("mori-max-tokens", "must not be negative");
  for (const auto* spec : {&o.weight_spec, &o.x_spec}) {
    const char* opt = spec == &o.weight_spec ? "weight-dist" : "x-dist";
    if (spec->distribution != "uniform" && spec->distribution != "normal")
      bad(opt, "'" + spec->distribution + "' is not uniform or normal");
    if (!(spec->scale >= 0.0 && spec->scale <= 1000.0))
      bad(spec == &o.weight_spec ? "weight-scale" : "x-scale", "must lie in [0, 1000]");
  }
}

// Per-token routing state shared by the patterns.
struct Router {
  const GenOptions& o;
  const TraceConfig& c;
  std::vector<int> popularity_rank;            // logical expert -> its rank in popularity order
  std::vector<std::vector<int>> replicas;      // logical expert -> its physical slots
  std::vector<std::vector<int>> rank_experts;  // rank -> its physical slots, ascending
  int max_tokens = 0;

  int space() const { return c.placement.num_logical; }  // score-based patterns pick logical experts

  double prior(int e) const {
    switch (o.routing) {
      case Routing::zipf:
        return -o.zipf_s * std::log(static_cast<double>(popularity_rank[e]) + 1.0);
      case Routing::hot:
        return popularity_rank[e] < o.num_hot ? std::log(o.hot_factor) : 0.0;
      default:
        return 0.0;
    }
  }

  // The K best candidates by score, descending, ties to the earlier candidate: what a stable
  // sort would put first, selected in O(n log k) since n is all experts and k is top-k.
  static std::vector<int> top(const std::vector<int>& cand, const std::vector<double>& score, int k) {
    std::vector<int> pos(cand.size());
    std::iota(pos.begin(), pos.end(), 0);
    const auto n = std::min(cand.size(), static_cast<std::size_t>(k));
    std::partial_sort(pos.begin(), pos.begin() + n, pos.end(), [&](int a, int b) {
      const double sa = score[cand[a]], sb = score[cand[b]];
      return sa > sb || (sa == sb && a < b);
    });
    std::vector<int> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = cand[pos[i]];
    return out;
  }

  // Router weights of the chosen entries of `z` (indexed like cand).
  void weights(const std::vector<int>& cand, const std::vector<double>& z, const std::vector<int>& chosen,
               float* w) const {
    const int K = static_cast<int>(chosen.size());
    std::vector<double> v(K);
    if (o.scoring == Scoring::softmax) {
      double zmax = -INFINITY;
      for (int e : cand) zmax = std::max(zmax, z[e]);
      double sum = 0.0;
      for (int e : cand) sum += std::exp(z[e] - zmax);
      for (int k = 0; k < K; ++k) v[k] = std::exp(z[chosen[k]] - zmax) / sum;
    } else {
      for (int k = 0; k < K; ++k) v[k] = 1.0 / (1.0 + std::exp(-z[chosen[k]]));
    }
    if (o.normalize) {
      double sum = 0.0;
      for (double x : v) sum += x;
      for (double& x : v) x /= sum;
    }
    for (int k = 0; k < K; ++k) w[k] = static_cast<float>(v[k]);
  }

  // Logical experts chosen by a score-based pattern, before mapping to physical slots.
  std::vector<int> pick_logical(std::uint64_t rs, std::vector<double>& z, std::vector<int>& cand) const {
    const int L = space();
    z.assign(L, 0.0);
    for (int e = 0; e < L; ++e) z[e] = prior(e) + gumbel(rs, static_cast<std::uint64_t>(e));
    cand.resize(L);
    std::iota(cand.begin(), cand.end(), 0);
    if (o.routing != Routing::grouped) return top(cand, z, o.top_k);
    // DeepSeek-V3: a group scores the sum of its two best expert scores; only the best
    // topk_group groups stay eligible.
    const int gs = L / o.n_group;
    std::vector<double> s(L), gscore(o.n_group);
    for (int e = 0; e < L; ++e) s[e] = o.scoring == Scoring::sigmoid ? 1.0 / (1.0 + std::exp(-z[e])) : z[e];
    std::vector<int> groups(o.n_group);
    std::iota(groups.begin(), groups.end(), 0);
    for (int g = 0; g < o.n_group; ++g) {
      std::vector<int> members(gs);
      std::iota(members.begin(), members.end(), g * gs);
      auto best = top(members, s, 2);
      gscore[g] = 0.0;
      for (int e : best) gscore[g] += s[e];
    }
    std::vector<int> eligible;
    for (int g : top(groups, gscore, o.topk_group))
      for (int e = g * gs; e < (g + 1) * gs; ++e) eligible.push_back(e);
    std::sort(eligible.begin(), eligible.end());
    return top(eligible, z, o.top_k);
  }

  void route(int layer, int rank, int token, std::int32_t* ids, float* w) const {
    const int K = o.top_k, E = c.num_experts;
    const std::uint64_t rs = stream_of(o.seed, {key(GenKey::routing), static_cast<std::uint64_t>(layer),
                                                static_cast<std::uint64_t>(rank), static_cast<std::uint64_t>(token)});
    std::vector<double> z;
    std::vector<int> cand, chosen;
    switch (o.routing) {
      case Routing::uniform:
      case Routing::zipf:
      case Routing::grouped:
      case Routing::hot: {
        const auto logical = pick_logical(rs, z, cand);
        weights(cand, z, logical, w);
        for (int k = 0; k < K; ++k) {
          // EPLB sends each logical pick to one of its replicas.
          const auto& rep = replicas[logical[k]];
          const auto r = mix64(rs ^ mix64(0x100000000ULL + static_cast<std::uint64_t>(k))) % rep.size();
          ids[k] = rep[r];
        }
        break;
      }
      case Routing::all_to_one:
      case Routing::spread: {
        z.assign(E, 0.0);
        for (int e = 0; e < E; ++e) z[e] = gumbel(rs, static_cast<std::uint64_t>(e));
        std::vector<bool> taken(space(), false);
        for (int k = 0; k < K; ++k) {
          const int target = o.routing == Routing::all_to_one ? 0 : k % c.num_ranks;
          // Best-scored slot on the target rank whose logical expert this token has not used.
          int best = -1;
          for (int e : rank_experts[target])
            if (!taken[c.logical_of(e)] && (best < 0 || z[e] > z[best])) best = e;
          if (best < 0)
            throw Error("--routing: rank " + std::to_string(target) + " holds too few distinct logical experts for --top-k " +
                        std::to_string(K));
          taken[c.logical_of(best)] = true;
          chosen.push_back(best);
        }
        if (o.routing == Routing::all_to_one) cand = rank_experts[0];
        else cand.resize(E), std::iota(cand.begin(), cand.end(), 0);
        weights(cand, z, chosen, w);
        std::copy(chosen.begin(), chosen.end(), ids);
        break;
      }
      case Routing::round_robin: {
        z.assign(E, 0.0);
        for (int e = 0; e < E; ++e) z[e] = gumbel(rs, static_cast<std::uint64_t>(e));
        const std::int64_t base = (static_cast<std::int64_t>(rank) * max_tokens + token) * K;
        for (int k = 0; k < K; ++k) chosen.push_back(static_cast<int>((base + k) % E));
        cand.resize(E);
        std::iota(cand.begin(), cand.end(), 0);
        weights(cand, z, chosen, w);
        std::copy(chosen.begin(), chosen.end(), ids);
        break;
      }
    }
    if (o.sentinel_rate > 0.0)
      for (int k = 0; k < K; ++k)
        if (uniform01(rs, 0x200000000ULL + static_cast<std::uint64_t>(k)) < o.sentinel_rate) {
          ids[k] = -1;
          w[k] = 0.0f;
        }
  }
};

void check_routing(const GenOptions& o, const TraceConfig& c) {
  const int L = c.placement.num_logical;
  switch (o.routing) {
    case Routing::grouped:
      if (o.n_group < 1 || L % o.n_group != 0)
        bad("groups", std::to_string(o.n_group) + " does not divide the " + std::to_string(L) + " logical experts");
      if (o.topk_group < 1 || o.topk_group > o.n_group)
        bad("topk-groups", "must lie in [1, --groups]");
      if (o.top_k > o.topk_group * (L / o.n_group))
        bad("top-k", std::to_string(o.top_k) + " exceeds the experts of " + std::to_string(o.topk_group) + " groups");
      break;
    case Routing::hot:
      if (o.num_hot < 1 || o.num_hot > L) bad("hot", "must lie in [1, " + std::to_string(L) + "]");
      break;
    case Routing::all_to_one:
      if (o.top_k > c.experts_per_rank())
        bad("top-k", std::to_string(o.top_k) + " exceeds the " + std::to_string(c.experts_per_rank()) +
                         " experts on rank 0 (all_to_one)");
      break;
    default:
      break;
  }
  if (o.routing != Routing::all_to_one && o.routing != Routing::spread && o.routing != Routing::round_robin &&
      o.top_k > L)
    bad("top-k", std::to_string(o.top_k) + " exceeds the " + std::to_string(L) + " logical experts");
}
}  // namespace

std::string_view name(Routing r) {
  for (auto& [k, n] : kRoutings)
    if (k == r) return n;
  throw Error("unknown routing");
}

Routing parse_routing(std::string_view s) {
  for (auto& [k, n] : kRoutings)
    if (n == s) return k;
  throw Error("unknown routing '" + std::string(s) +
              "' (expected uniform, zipf, grouped, hot, all_to_one, round_robin, spread)");
}

std::string_view name(Scoring s) { return s == Scoring::softmax ? "softmax" : "sigmoid"; }

Scoring parse_scoring(std::string_view s) {
  if (s == "softmax") return Scoring::softmax;
  if (s == "sigmoid") return Scoring::sigmoid;
  throw Error("unknown scoring '" + std::string(s) + "' (expected softmax or sigmoid)");
}

Placement make_placement(const GenOptions& o) {
  const int E = o.num_experts, R = o.num_ranks;
  Placement p = contiguous_placement(E, R);
  if (o.placement == PlacementKind::explicit_map) {
    // Each rank still holds E / R experts, but which ones is a seeded shuffle.
    const auto perm = permutation(stream_of(o.seed, {key(GenKey::placement)}), E);
    p.kind = PlacementKind::explicit_map;
    for (int e = 0; e < E; ++e) p.expert_to_rank[e] = perm[e] / (E / R);
  } else if (o.placement == PlacementKind::eplb) {
    const int L = o.num_logical ? o.num_logical : std::max(1, E / 2);
    if (L < 1 || L > E) bad("logical", std::to_string(L) + " must lie in [1, --experts]");
    // Slots [0, L) hold the logical experts in order, the rest replicas of 0, 1, ... again.
    p.kind = PlacementKind::eplb;
    p.num_logical = L;
    for (int e = 0; e < E; ++e) p.physical_to_logical[e] = e % L;
  }
  return p;
}

Trace generate(const GenOptions& o) {
  check_options(o);
  Trace t;
  TraceConfig& c = t.config;
  c.num_ranks = o.num_ranks;
  c.num_experts = o.num_experts;
  c.top_k = o.top_k;
  c.hidden = o.hidden;
  c.intermediate = o.intermediate;
  c.activation = o.activation;
  c.token_dtype = o.token_dtype;
  c.weight_dtype = o.weight_dtype;
  c.scale_block = o.scale_block;
  c.placement = make_placement(o);
  c.num_shared_experts = o.num_shared_experts;
  c.shared_intermediate = o.num_shared_experts > 0 ? (o.shared_intermediate ? o.shared_intermediate : o.intermediate) : 0;
  c.routed_scaling_factor = o.routed_scaling_factor;
  check_routing(o, c);

  t.weight_spec = o.weight_spec;
  t.weight_spec.seed = o.weight_seed.value_or(o.seed);
  GeneratorSpec xs = o.x_spec;
  xs.seed = o.x_seed.value_or(o.seed);
  if (!o.store_x) t.x_spec = xs;

  // Token counts are per rank and the same in every layer (one batch through the model).
  std::vector<std::int64_t> tokens(o.num_ranks, o.tokens_per_rank);
  if (o.tokens_max > o.tokens_per_rank)
    for (int r = 0; r < o.num_ranks; ++r)
      tokens[r] = o.tokens_per_rank +
                  static_cast<std::int64_t>(uniform01(stream_of(o.seed, {key(GenKey::tokens)}), r) *
                                            (o.tokens_max - o.tokens_per_rank + 1));
  const std::int64_t max_tokens = *std::max_element(tokens.begin(), tokens.end());
  c.mori.max_num_inp_token_per_rank = o.mori_max_tokens ? o.mori_max_tokens : max_tokens;

  Router router{o, c, {}, {}, {}, static_cast<int>(c.mori.max_num_inp_token_per_rank)};
  const int L = c.placement.num_logical;
  router.popularity_rank.resize(L);
  const auto order = permutation(stream_of(o.seed, {key(GenKey::popularity)}), L);
  for (int i = 0; i < L; ++i) router.popularity_rank[order[i]] = i;
  router.replicas.resize(L);
  router.rank_experts.resize(o.num_ranks);
  for (int e = 0; e < c.num_experts; ++e) {
    router.replicas[c.logical_of(e)].push_back(e);
    router.rank_experts[c.rank_of(e)].push_back(e);
  }

  const auto K = static_cast<std::size_t>(o.top_k);
  t.layers.resize(o.num_layers);
  for (int l = 0; l < o.num_layers; ++l) {
    Layer& layer = t.layers[l];
    layer.index = l;
    if (o.store_weights) layer.weights = generate_weights(c, t.weight_spec, l);
    layer.ranks.resize(o.num_ranks);
    // Every token draws from its own stream, so ranks are independent work items: the bytes do
    // not depend on the thread count. Worker w takes ranks w, w + n, w + 2n, ...
    auto make_rank = [&](int r) {
      RankInput& in = layer.ranks[r];
      in.num_tokens = tokens[r];
      const auto T = static_cast<std::size_t>(in.num_tokens);
      in.topk_ids.resize(T * K);
      in.topk_weights.resize(T * K);
      for (std::size_t i = 0; i < T; ++i)
        router.route(l, r, static_cast<int>(i), in.topk_ids.data() + i * K, in.topk_weights.data() + i * K);
      if (o.store_x) generate_inputs(c, xs, l, r, in);
    };
    const int n = std::max(1, std::min(o.num_ranks, static_cast<int>(std::thread::hardware_concurrency())));
    std::vector<std::exception_ptr> errors(n);
    std::vector<std::thread> workers;
    for (int w = 0; w < n; ++w)
      workers.emplace_back([&, w] {
        try {
          for (int r = w; r < o.num_ranks; r += n) make_rank(r);
        } catch (...) {
          errors[w] = std::current_exception();
        }
      });
    for (auto& t : workers) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }
  return t;
}

}  // namespace moesim
