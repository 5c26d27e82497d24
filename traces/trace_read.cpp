#include <cmath>
#include <set>
#include <sstream>

#include "error.hpp"
#include "inputs.hpp"
#include "trace_io.hpp"

namespace moesim {

namespace {
// Bounds that keep a hostile or damaged file from asking for absurd allocations.
constexpr std::int64_t kMaxRanks = 1 << 16, kMaxExperts = 1 << 20, kMaxTopK = 64, kMaxDim = 1 << 20;
constexpr std::int64_t kMaxTokens = 1 << 24, kMaxLayers = 1 << 16;
constexpr std::uint64_t kMaxElements = std::uint64_t{1} << 33;
constexpr double kMaxScale = 1000;  // generator scales and routed_scaling_factor

std::string dims_text(const std::vector<std::uint64_t>& d) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < d.size(); ++i) s << (i ? ", " : "") << d[i];
  s << "]";
  return s.str();
}

std::string index_text(std::uint64_t flat, std::uint64_t cols) {
  if (cols <= 1) return "index [" + std::to_string(flat) + "]";
  return "index [" + std::to_string(flat / cols) + ", " + std::to_string(flat % cols) + "]";
}

std::int64_t int_attr(const h5::File& f, const std::string& obj, const std::string& n, std::int64_t lo,
                      std::int64_t hi) {
  const std::int64_t v = f.attr_int(obj, n);
  if (v < lo || v > hi)
    f.fail(obj, "attribute '" + n + "' = " + std::to_string(v) + " out of range [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "]");
  return v;
}

std::string opt_string(const h5::File& f, const std::string& obj, const std::string& n, std::string dflt = {}) {
  return f.has_attr(obj, n) ? f.attr_string(obj, n) : dflt;
}

template <class Parse>
auto parsed_attr(const h5::File& f, const std::string& obj, const std::string& n, Parse parse) {
  const std::string s = f.attr_string(obj, n);
  try {
    return parse(s);
  } catch (const Error& e) {
    f.fail(obj, "attribute '" + n + "': " + e.what());
  }
}

void check_shape(const h5::File& f, const std::string& ds, const std::vector<std::uint64_t>& dims) {
  const auto in = f.info(ds);
  if (in.dims != dims) f.fail(ds, "shape " + dims_text(in.dims) + ", expected " + dims_text(dims));
}

template <class T>
std::vector<T> read_checked(const h5::File& f, const std::string& ds, const std::vector<std::uint64_t>& dims) {
  check_shape(f, ds, dims);
  return f.read<T>(ds);
}

void check_finite(const h5::File& f, const std::string& ds, const std::vector<float>& v, std::uint64_t cols,
                  std::uint64_t limit = UINT64_MAX) {
  for (std::uint64_t i = 0; i < v.size() && i < limit; ++i)
    if (!std::isfinite(v[i])) f.fail(ds, index_text(i, cols) + ": value " + std::to_string(v[i]) + " is not finite");
}

void check_ids(const h5::File& f, const std::string& ds, const std::vector<std::int32_t>& ids, int K, int E,
               std::uint64_t rows, ReadReport* report) {
  for (std::uint64_t i = 0; i < rows * K && i < ids.size(); ++i)
    if (ids[i] < -1 || ids[i] >= E)
      f.fail(ds, index_text(i, K) + ": id " + std::to_string(ids[i]) + " out of range [-1, " + std::to_string(E) +
                     ")");
  if (!report) return;
  for (std::uint64_t t = 0; t < rows && (t + 1) * K <= ids.size(); ++t)
    for (int a = 0; a < K; ++a)
      for (int b = a + 1; b < K; ++b)
        if (ids[t * K + a] >= 0 && ids[t * K + a] == ids[t * K + b]) {
          report->warn(f.path() + ": " + ds + ": row " + std::to_string(t) + ": expert " +
                       std::to_string(ids[t * K + a]) + " appears twice (slots " + std::to_string(a) + " and " +
                       std::to_string(b) + ")");
          a = K;  // one warning per row
          break;
        }
}

// An optional group: false when absent; a dataset (or anything else) in its place is an error,
// not a silently ignored capture or placement.
bool has_group(const h5::File& f, const std::string& g) {
  if (!f.exists(g)) return false;
  if (!f.is_group(g)) f.fail(g, "expected a group, found a dataset");
  return true;
}

GeneratorSpec read_spec(const h5::File& f, const std::string& g) {
  GeneratorSpec s;
  s.seed = static_cast<std::uint64_t>(f.attr_int(g, "seed"));
  s.distribution = f.attr_string(g, "distribution");
  if (s.distribution != "uniform" && s.distribution != "normal")
    f.fail(g, "attribute 'distribution' = '" + s.distribution + "', expected uniform or normal");
  s.scale = f.attr_double(g, "scale");
  // Bounded so generated layers stay finite in every mode (1e300 made all-NaN goldens).
  if (!(s.scale >= 0 && s.scale <= kMaxScale))
    f.fail(g, "attribute 'scale' = " + std::to_string(s.scale) + " out of range [0, 1000]");
  return s;
}

double real_attr(const h5::File& f, const std::string& obj, const std::string& n, double lo, double hi) {
  const double v = f.attr_double(obj, n);
  if (!(v > lo && v <= hi))
    f.fail(obj, "attribute '" + n + "' = " + std::to_string(v) + " out of range (" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "]");
  return v;
}

// Schema v2's model-family attributes; v1 files have none of them (their defaults).
void read_family(const h5::File& f, const std::string& g, std::int64_t version, TraceConfig& c) {
  if (version < 2) {
    if (c.activation == Activation::swiglu_oai)
      f.fail(g, "attribute 'activation' = 'swiglu_oai_and_mul' needs schema_version 2");
    return;
  }
  c.topk_weights_include_scaling = int_attr(f, g, "topk_weights_include_scaling", 0, 1) != 0;
  c.expert_bias = int_attr(f, g, "expert_bias", 0, 1) != 0;
  c.shared_expert_gate = int_attr(f, g, "shared_expert_gate", 0, 1) != 0;
  if (c.shared_expert_gate && c.num_shared_experts == 0)
    f.fail(g, "attribute 'shared_expert_gate' = 1 needs num_shared_experts > 0");
  if (c.activation == Activation::swiglu_oai) {
    c.swiglu_alpha = real_attr(f, g, "swiglu_alpha", 0, kMaxScale);
    c.swiglu_limit = real_attr(f, g, "swiglu_limit", 0, 1e6);
  }
}

TraceConfig read_config(const h5::File& f, std::int64_t version) {
  const std::string g = "/config";
  if (!f.is_group(g)) f.fail(g, "missing group");
  TraceConfig c;
  c.num_ranks = static_cast<int>(int_attr(f, g, "num_ranks", 1, kMaxRanks));
  c.num_experts = static_cast<int>(int_attr(f, g, "num_experts", 1, kMaxExperts));
  c.top_k = static_cast<int>(int_attr(f, g, "top_k", 1, std::min<std::int64_t>(kMaxTopK, c.num_experts)));
  c.hidden = static_cast<int>(int_attr(f, g, "hidden", 1, kMaxDim));
  c.intermediate = static_cast<int>(int_attr(f, g, "intermediate", 1, kMaxDim));
  c.activation = parsed_attr(f, g, "activation", parse_activation);
  c.token_dtype = parsed_attr(f, g, "token_dtype", parse_dtype);
  if (c.token_dtype != DType::f32 && c.token_dtype != DType::bf16 && !is_fp8(c.token_dtype))
    f.fail(g, "attribute 'token_dtype' must be float32, bfloat16, float8_e4m3fn or float8_e4m3fnuz");
  c.weight_dtype = parsed_attr(f, g, "weight_dtype", parse_dtype);
  if (c.weight_dtype != DType::f32 && c.weight_dtype != DType::bf16)
    f.fail(g, "attribute 'weight_dtype' must be float32 or bfloat16");
  c.scale_block = static_cast<int>(int_attr(f, g, "scale_block", 1, kMaxDim));
  c.num_shared_experts = static_cast<int>(int_attr(f, g, "num_shared_experts", 0, 64));
  c.shared_intermediate = static_cast<int>(int_attr(f, g, "shared_intermediate", 0, kMaxDim));
  if (c.num_shared_experts > 0 && c.shared_intermediate == 0)
    f.fail(g, "attribute 'shared_intermediate' must be positive when num_shared_experts > 0");
  c.routed_scaling_factor = f.attr_double(g, "routed_scaling_factor");
  if (!(c.routed_scaling_factor >= 0 && c.routed_scaling_factor <= kMaxScale))
    f.fail(g, "attribute 'routed_scaling_factor' = " + std::to_string(c.routed_scaling_factor) +
                  " out of range [0, 1000]");
  c.router_weight_on_input = int_attr(f, g, "router_weight_on_input", 0, 1) != 0;
  c.library = opt_string(f, g, "library");
  c.library_version = opt_string(f, g, "library_version");
  read_family(f, g, version, c);

  const std::string p = g + "/placement";
  c.placement.kind = has_group(f, p) ? parsed_attr(f, p, "kind", parse_placement) : PlacementKind::contiguous;
  if (c.placement.kind == PlacementKind::contiguous) {
    if (c.num_experts % c.num_ranks != 0)
      f.fail(g, "num_experts " + std::to_string(c.num_experts) + " is not a multiple of num_ranks " +
                    std::to_string(c.num_ranks) + " (contiguous placement)");
    c.placement = contiguous_placement(c.num_experts, c.num_ranks);
    // Written or not, a contiguous placement has one logical expert per physical one.
    if (f.exists(p) && f.has_attr(p, "num_logical") && f.attr_int(p, "num_logical") != c.num_experts)
      f.fail(p, "attribute 'num_logical' = " + std::to_string(f.attr_int(p, "num_logical")) +
                    ", a contiguous placement has num_experts = " + std::to_string(c.num_experts));
  } else {
    const std::vector<std::uint64_t> dims{static_cast<std::uint64_t>(c.num_experts)};
    c.placement.num_logical = static_cast<int>(int_attr(f, p, "num_logical", 1, c.num_experts));
    c.placement.expert_to_rank = read_checked<std::int32_t>(f, p + "/expert_to_rank", dims);
    c.placement.physical_to_logical = read_checked<std::int32_t>(f, p + "/physical_to_logical", dims);
    for (int e = 0; e < c.num_experts; ++e) {
      if (c.placement.expert_to_rank[e] < 0 || c.placement.expert_to_rank[e] >= c.num_ranks)
        f.fail(p + "/expert_to_rank", "index [" + std::to_string(e) + "]: rank " +
                                          std::to_string(c.placement.expert_to_rank[e]) + " out of range");
      if (c.placement.physical_to_logical[e] < 0 || c.placement.physical_to_logical[e] >= c.placement.num_logical)
        f.fail(p + "/physical_to_logical", "index [" + std::to_string(e) + "]: logical expert " +
                                               std::to_string(c.placement.physical_to_logical[e]) + " out of range");
    }
  }

  const std::string m = g + "/mori";
  if (has_group(f, m)) {
    c.mori.max_num_inp_token_per_rank = int_attr(f, m, "max_num_inp_token_per_rank", 0, kMaxTokens);
    c.mori.max_total_recv_tokens = int_attr(f, m, "max_total_recv_tokens", 0, kMaxTokens * kMaxRanks);
    c.mori.kernel_type = opt_string(f, m, "kernel_type", "IntraNode");
    c.mori.gpus_per_node = static_cast<int>(int_attr(f, m, "gpus_per_node", 1, kMaxRanks));
  }
  const std::string s = g + "/library_settings";
  if (has_group(f, s))
    for (const auto& n : f.attr_names(s)) c.library_settings[n] = f.attr_string(s, n);
  return c;
}

}  // namespace

void read_receive_buffers(const h5::File& f, const TraceConfig& c, const std::string& g, std::int64_t num_tokens,
                          Captured& cap, bool rows) {
  if (!has_group(f, g)) return;
  const auto H = static_cast<std::uint64_t>(c.hidden), K = static_cast<std::uint64_t>(c.top_k);
  const auto S = static_cast<std::uint64_t>(c.scales_per_token()), T = static_cast<std::uint64_t>(num_tokens);
  if (f.has_attr(g, "total_recv")) cap.total_recv = int_attr(f, g, "total_recv", 0, kMaxTokens * kMaxRanks);
  if (f.has_attr(g, "buffer_rows")) cap.buffer_rows = int_attr(f, g, "buffer_rows", 0, kMaxTokens * kMaxRanks);
  // The recv_* datasets share their row count N; only rows [0, total_recv) are valid.
  std::int64_t n = -1;
  for (const char* ds : {"recv_topk_ids", "recv_weights", "recv_x", "recv_scales"}) {
    if (!f.exists(g + "/" + ds)) continue;
    const auto in = f.info(g + "/" + ds);
    if (in.dims.size() != 2) f.fail(g + "/" + ds, "expected 2 dimensions, found " + std::to_string(in.dims.size()));
    if (n >= 0 && static_cast<std::int64_t>(in.dims[0]) != n)
      f.fail(g + "/" + ds, "has " + std::to_string(in.dims[0]) + " rows, other recv datasets " + std::to_string(n));
    n = static_cast<std::int64_t>(in.dims[0]);
  }
  if (n > kMaxTokens * 64) f.fail(g, "absurd receive buffer of " + std::to_string(n) + " rows");
  cap.rows = std::max<std::int64_t>(n, 0);
  const auto N = static_cast<std::uint64_t>(cap.rows);
  if (cap.total_recv >= 0 && n >= 0 && cap.total_recv > n)
    f.fail(g, "total_recv " + std::to_string(cap.total_recv) + " exceeds the " + std::to_string(n) +
                  " rows captured");
  const std::uint64_t valid = cap.total_recv >= 0 ? static_cast<std::uint64_t>(cap.total_recv) : N;
  if (f.exists(g + "/recv_topk_ids")) {
    cap.recv_topk_ids = read_checked<std::int32_t>(f, g + "/recv_topk_ids", {N, K});
    check_ids(f, g + "/recv_topk_ids", cap.recv_topk_ids, c.top_k, c.num_experts, valid, nullptr);
  }
  if (f.exists(g + "/recv_weights")) {
    cap.recv_weights = read_checked<float>(f, g + "/recv_weights", {N, K});
    check_finite(f, g + "/recv_weights", cap.recv_weights, K, valid * K);
  }
  if (rows && f.exists(g + "/recv_x")) cap.recv_x = read_values(f, g + "/recv_x", {N, H}, c.token_dtype);
  if (rows && f.exists(g + "/recv_scales")) cap.recv_scales = read_checked<float>(f, g + "/recv_scales", {N, S});
  if (f.exists(g + "/src_token_pos")) {
    const auto in = f.info(g + "/src_token_pos");
    if (in.dims.size() != 1 || in.dims[0] > static_cast<std::uint64_t>(kMaxTokens) * 64)
      f.fail(g + "/src_token_pos", "expected a 1-D dataset of sane length, found " + dims_text(in.dims));
    if (cap.total_recv >= 0 && in.dims[0] < static_cast<std::uint64_t>(cap.total_recv))
      f.fail(g + "/src_token_pos", "has " + std::to_string(in.dims[0]) + " entries, fewer than total_recv " +
                                       std::to_string(cap.total_recv));
    cap.src_token_pos = f.read<std::int64_t>(g + "/src_token_pos");
    cap.src_pos_encoding = opt_string(f, g + "/src_token_pos", "encoding", "flat");
  }
  if (!rows) return;
  if (f.exists(g + "/expert_out")) {
    const auto in = f.info(g + "/expert_out");
    if (in.dims.size() != 2 || in.dims[1] != H || in.dims[0] > static_cast<std::uint64_t>(kMaxTokens) * 64)
      f.fail(g + "/expert_out", "shape " + dims_text(in.dims) + ", expected [rows, " + std::to_string(H) + "]");
    cap.expert_rows = static_cast<std::int64_t>(in.dims[0]);
    cap.expert_out = read_values(f, g + "/expert_out", in.dims, DType::f32, true);
  }
  if (f.exists(g + "/combine_out")) cap.combine_out = read_values(f, g + "/combine_out", {T, H}, DType::f32, true);
  if (f.exists(g + "/final_out")) cap.final_out = read_values(f, g + "/final_out", {T, H}, DType::f32, true);
}

namespace {

void read_weights(const h5::File& f, const TraceConfig& c, const std::string& base, Layer& layer) {
  const auto H = static_cast<std::uint64_t>(c.hidden), I = static_cast<std::uint64_t>(c.intermediate);
  const auto L = static_cast<std::uint64_t>(c.placement.num_logical);
  const std::uint64_t g1 = is_gated(c.activation) ? 2 : 1;
  if (L * g1 * I * H * 2 > kMaxElements) f.fail(base, "stored weights too large; use a generator spec");
  ExpertWeights w;
  w.w1 = read_values(f, base + "/w1", {L, g1 * I, H}, c.weight_dtype);
  check_finite(f, base + "/w1", w.w1, H);
  w.w2 = read_values(f, base + "/w2", {L, H, I}, c.weight_dtype);
  check_finite(f, base + "/w2", w.w2, I);
  if (c.num_shared_experts > 0) {
    const auto S = static_cast<std::uint64_t>(c.num_shared_experts);
    const auto Is = static_cast<std::uint64_t>(c.shared_intermediate);
    w.shared_w1 = read_values(f, base + "/shared_w1", {S, g1 * Is, H}, c.weight_dtype);
    check_finite(f, base + "/shared_w1", w.shared_w1, H);
    w.shared_w2 = read_values(f, base + "/shared_w2", {S, H, Is}, c.weight_dtype);
    check_finite(f, base + "/shared_w2", w.shared_w2, Is);
  }
  auto vec = [&](const std::string& n, const std::vector<std::uint64_t>& dims) {
    std::vector<float> v = read_values(f, base + "/" + n, dims, c.weight_dtype);
    check_finite(f, base + "/" + n, v, dims.size() > 1 ? dims[1] : 1);
    return v;
  };
  if (c.expert_bias) {
    w.b1 = vec("b1", {L, g1 * I});
    w.b2 = vec("b2", {L, H});
    if (c.num_shared_experts > 0) {
      const auto S = static_cast<std::uint64_t>(c.num_shared_experts);
      w.shared_b1 = vec("shared_b1", {S, g1 * static_cast<std::uint64_t>(c.shared_intermediate)});
      w.shared_b2 = vec("shared_b2", {S, H});
    }
  }
  if (c.shared_expert_gate) w.shared_gate = vec("shared_gate", {H});
  layer.weights = std::move(w);
}
}  // namespace

std::vector<float> read_values(const h5::File& file, const std::string& ds, const std::vector<std::uint64_t>& dims,
                               DType expected, bool any_float) {
  check_shape(file, ds, dims);
  const auto in = file.info(ds);
  std::vector<float> out;
  auto declared_or = [&](DType t) {
    if (!in.declared.empty()) return in.declared;
    if (t == DType::bf16) return std::string("uint16 without a 'dtype' attribute");  // patterns say what they hold
    if (t == DType::u8) return std::string("uint8 without a 'dtype' attribute");
    return std::string(name(t));
  };
  if (in.stored == DType::f32) {
    out = file.read<float>(ds);
  } else if (in.stored == DType::f64) {
    const auto d = file.read<double>(ds);
    out.assign(d.begin(), d.end());
  } else if (in.stored == DType::bf16 && (in.declared == "bfloat16" || in.declared == "float16")) {
    const auto bits = file.read<std::uint16_t>(ds);
    out.resize(bits.size());
    const bool bf = in.declared == "bfloat16";
    for (size_t i = 0; i < bits.size(); ++i) out[i] = bf ? bf16_bits_to_float(bits[i]) : f16_bits_to_float(bits[i]);
  } else if (in.stored == DType::u8 && (in.declared == "float8_e4m3fn" || in.declared == "float8_e4m3fnuz")) {
    const auto bits = file.read<std::uint8_t>(ds);
    const DType t = parse_dtype(in.declared);
    out.resize(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) out[i] = fp8_bits_to_float(bits[i], t);
  } else {
    file.fail(ds, "dtype is " + declared_or(in.stored) + ", expected " + std::string(name(expected)));
  }
  // Values must be the declared token/weight dtype (a float32 trace's x stored as bf16 or fp8
  // would be read without its meaning or its scales); outputs may be any float type.
  if (!any_float) {
    const std::string got = in.stored == DType::f32 ? "float32" : in.stored == DType::f64 ? "float64" : in.declared;
    if (got != name(expected)) file.fail(ds, "dtype is " + got + ", expected " + std::string(name(expected)));
  }
  return out;
}

namespace {
void read_tokens(const h5::File& f, const Trace& t, int l, int r, RankInput& in) {
  const TraceConfig& c = t.config;
  if (t.x_spec) return generate_inputs(c, *t.x_spec, l, r, in);
  const std::string rp = rank_path(l, r);
  const auto T = static_cast<std::uint64_t>(in.num_tokens), H = static_cast<std::uint64_t>(c.hidden);
  const auto S = static_cast<std::uint64_t>(c.scales_per_token());
  in.x = read_values(f, rp + "/x", {T, H}, c.token_dtype);
  check_finite(f, rp + "/x", in.x, H);
  if (is_fp8(c.token_dtype)) {
    in.x_scales = read_checked<float>(f, rp + "/x_scales", {T, S});
    check_finite(f, rp + "/x_scales", in.x_scales, S);
  }
}
}  // namespace

void read_layer_tokens(const h5::File& f, const Trace& t, int layer_pos, Layer& out) {
  for (int r = 0; r < t.config.num_ranks; ++r) read_tokens(f, t, t.layers.at(layer_pos).index, r, out.ranks.at(r));
}

Trace read_trace(const std::string& path, const ReadOptions& opt, ReadReport* report) {
  const h5::File f = h5::File::open_read(path);
  if (!f.has_attr("/", "format") || f.attr_string("/", "format") != kTraceFormat)
    f.fail("/", "not a moesim trace (attribute 'format' is not '" + std::string(kTraceFormat) + "')");
  const std::int64_t version = f.attr_int("/", "schema_version");
  if (version < 1 || version > kSchemaVersion)
    f.fail("/", "schema_version " + std::to_string(version) + " is not supported (this moesim reads 1 to " +
                    std::to_string(kSchemaVersion) + ")");
  Trace t;
  t.path = path;
  t.schema_version = static_cast<int>(version);
  t.command = opt_string(f, "/", "command");
  t.config = read_config(f, version);
  const TraceConfig& c = t.config;
  if (has_group(f, "/generator/weights")) t.weight_spec = read_spec(f, "/generator/weights");
  if (has_group(f, "/generator/x")) t.x_spec = read_spec(f, "/generator/x");

  const int L = static_cast<int>(int_attr(f, "/layers", "num_layers", 1, kMaxLayers));
  const auto H = static_cast<std::uint64_t>(c.hidden), K = static_cast<std::uint64_t>(c.top_k);
  t.layers.resize(L);
  for (int l = 0; l < L; ++l) {
    Layer& layer = t.layers[l];
    layer.index = l;
    const std::string lp = layer_path(l);
    if (!f.is_group(lp)) f.fail(lp, "missing group");
    layer.step = f.has_attr(lp, "step") ? static_cast<int>(f.attr_int(lp, "step")) : 0;
    if (has_group(f, lp + "/weights")) {
      if (opt.weights) read_weights(f, c, lp + "/weights", layer);
    } else if (c.expert_bias || c.shared_expert_gate) {
      f.fail(lp + "/weights", std::string("missing: ") + (c.expert_bias ? "expert_bias" : "shared_expert_gate") +
                                  " = 1 needs stored weights");
    } else if (!f.is_group("/generator/weights")) {
      f.fail(lp + "/weights", "missing: neither stored weights nor /generator/weights");
    }
    layer.ranks.resize(c.num_ranks);
    for (int r = 0; r < c.num_ranks; ++r) {
      RankInput& in = layer.ranks[r];
      const std::string rp = rank_path(l, r);
      if (!f.is_group(rp)) f.fail(rp, "missing group");
      in.num_tokens = int_attr(f, rp, "num_tokens", 0, kMaxTokens);
      const auto T = static_cast<std::uint64_t>(in.num_tokens);
      if (T * H > kMaxElements) f.fail(rp, "absurd size: " + std::to_string(T) + " tokens x hidden " + std::to_string(H));
      in.topk_ids = read_checked<std::int32_t>(f, rp + "/topk_ids", {T, K});
      check_ids(f, rp + "/topk_ids", in.topk_ids, c.top_k, c.num_experts, T, report);
      in.topk_weights = read_checked<float>(f, rp + "/topk_weights", {T, K});
      check_finite(f, rp + "/topk_weights", in.topk_weights, K);
      if (!t.x_spec && !f.exists(rp + "/x")) f.fail(rp + "/x", "missing dataset (and no /generator/x)");
      if (opt.tensors) read_tokens(f, t, l, r, in);
      if (opt.captured) read_receive_buffers(f, c, rp + "/captured", in.num_tokens, in.captured);
    }
    // A receive count is bounded by what the layer's routing can send, one row per (token,
    // expert) pair: a larger one is damage, and would size the simulator's buffers.
    std::int64_t pairs = 0;
    for (const RankInput& in : layer.ranks) pairs += in.num_tokens * static_cast<std::int64_t>(K);
    for (int r = 0; r < c.num_ranks; ++r)
      if (layer.ranks[r].captured.total_recv > pairs)
        f.fail(rank_path(l, r) + "/captured", "total_recv " + std::to_string(layer.ranks[r].captured.total_recv) +
                                                  " exceeds the layer's " + std::to_string(pairs) +
                                                  " (token, expert) pairs");
  }
  return t;
}

}  // namespace moesim
