#include "rounding_bound.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace moesim::bound {

namespace {

constexpr double kBf16 = 0x1p-8;  // unit roundoff of bfloat16 (8 significant bits)
constexpr double kFp8 = 0x1p-4;   // e4m3fn and e4m3fnuz (4 significant bits)

double compute_unit(Numerics n) { return n == Numerics::exact ? 0x1p-53 : 0x1p-24; }

// One expert output row on one side (reference/NUMERICS.md, "The expert input row" and "One
// expert's FFN"): the sum of the unit roundoffs of every rounding on its way, each taken as a
// relative perturbation of the row it rounds and carried to the output: a perturbation of the
// input row or of w1 reaches both the gate and the up half, so the activation's output moves by
// (kappa + 1) times it (kappa alone for a plain activation), kappa being the activation's relative
// condition |x act'(x) / act(x)| where its outputs are largest (x >= 0: SiLU 1.28, GELU 1.29).
// Steps that are fixed functions of the stored tokens and weights (conversions, the weight on the
// input, dispatch quantization, rounding the weights) give both sides the same bits when both run
// the same mode; they count only when the modes differ (`inputs`). The others follow a sum whose
// order a kernel may choose, and count always.
constexpr double kKappa = 1.3;

double expert_steps(const TraceConfig& c, Numerics n, bool shared, bool inputs) {
  const double u = compute_unit(n), b = rounds_bf16(n) ? kBf16 : 0;
  double in = 0;                       // before GEMM1's output: carried through the activation
  if (is_fp8(c.token_dtype)) in += u;  // step 1: q * s in the compute type
  const bool on_input = c.router_weight_on_input && !shared;
  if (on_input) in += u + b;           // step 2: w * v, then rb in bf16/fp8
  // Step 3, fp8 mode's dispatch quantization (shared experts run the bf16 pipeline): v / scale,
  // the fp8 rounding, q * scale. fp8 tokens without a weight on the input pass through.
  const bool quantize = n == Numerics::fp8 && !shared && !(is_fp8(c.token_dtype) && !on_input);
  if (quantize) in += kFp8 + 2 * u;
  else if (b > 0 && c.token_dtype != DType::bf16 && !on_input) in += b;  // step 4: rb(v)
  const bool round_w = b > 0 && c.weight_dtype != DType::bf16;
  if (round_w) in += b;     // rb(w1)
  if (!inputs) in = 0;
  in += c.hidden * u + b;   // GEMM1: H products and H sums (Higham's gamma_H), then rb(g)
  const double carry = is_gated(c.activation) ? kKappa + 1 : kKappa;
  double out = 10 * u + b;  // the activation (within an ulp, at most 8 more operations), * up, rb(h)
  if (round_w && inputs) out += b;  // rb(w2)
  const int inter = shared ? c.shared_intermediate : c.intermediate;
  out += inter * u + b;     // GEMM2: I products and sums, then rb(y)
  if (c.expert_bias) out += 2 * u;  // the bias adds after GEMM1 and GEMM2
  // The shared-expert gate: x . gate (H products and sums), rb(z), the sigmoid, then s * shared
  // and rb; the sigmoid's relative condition |z (1 - sigmoid(z))| stays under 0.28 for z >= 0.
  if (shared && c.shared_expert_gate) out += kKappa * (c.hidden * u + b) + 6 * u + 2 * b;
  return carry * in + out;
}

// The routed weighted sum: K products and K sums, rb, and one rb per level of partial sums.
double sum_steps(const TraceConfig& c, Side s) {
  const double b = rounds_bf16(s.numerics) ? kBf16 : 0;
  return c.top_k * compute_unit(s.numerics) + b * (1 + s.partial_levels);
}
// One operation in the compute type followed by rb: the scaling, the shared add.
double op_steps(Numerics n) { return compute_unit(n) + (rounds_bf16(n) ? kBf16 : 0); }

std::string ratio_text(double r) {
  char buf[32];
  if (r >= 10) std::snprintf(buf, sizeof buf, "%.0f", r);
  else std::snprintf(buf, sizeof buf, "%.2g", r);
  return buf;
}

}  // namespace

int partial_levels(std::string_view combine_model) {
  if (combine_model == "rank-sum") return 1;
  if (combine_model == "internode-v1") return 2;
  return 0;
}

Budget::Budget(const TraceConfig& c, Side a, Side b)
    : hidden_(c.hidden),
      top_k_(c.top_k),
      num_shared_(c.num_shared_experts),
      weight_on_input_(c.router_weight_on_input),
      // Weights that hold the factor already: combine applies none (NUMERICS.md, "Combine").
      scale_(c.topk_weights_include_scaling ? 1.0 : std::fabs(c.routed_scaling_factor)),
      coarser_(std::max(a.numerics, b.numerics)) {
  // fp8 mode's shared experts run the bf16 pipeline (NUMERICS.md, "The expert input row").
  auto shared_of = [](Numerics n) { return n == Numerics::fp8 ? Numerics::bf16 : n; };
  for (const Side& s : {a, b}) {
    const Numerics shared_mode = shared_of(s.numerics);
    expert_ += expert_steps(c, s.numerics, false, a.numerics != b.numerics);
    shared_expert_ += expert_steps(c, shared_mode, true, shared_of(a.numerics) != shared_of(b.numerics));
    sum_ += sum_steps(c, s);
    if (c.routed_scaling_factor != 1.0 && !c.topk_weights_include_scaling) scaling_ += op_steps(s.numerics);
    if (c.num_shared_experts > 0) add_shared_ += op_steps(shared_mode);
    if (c.num_shared_experts > 1)
      sum_shared_ += c.num_shared_experts * compute_unit(shared_mode) + (rounds_bf16(shared_mode) ? kBf16 : 0);
  }
}

void Budget::token(const double* y, const float* w, const double* final_ref, double* out) const {
  if (final_ref) tokens(y, w, final_ref, nullptr, out);
  else tokens(y, w, nullptr, out, nullptr);
}

void Budget::tokens(const double* y, const float* w, const double* final_ref, double* combine_out,
                    double* final_out) const {
  const int H = hidden_, K = top_k_;
  // What the slots' own rounding carries into every column: sum_k |w_k| * expert * max_j |y_kj|.
  double carried = 0;
  for (int k = 0; k < K; ++k) {
    double m = 0;
    for (int j = 0; j < H; ++j) m = std::max(m, std::fabs(y[k * H + j]));
    carried += (weight_on_input_ ? 1.0 : std::fabs(w[k])) * expert_ * m;
  }
  // Columns in blocks, slot after slot within a block: every column's sums still run over the
  // slots in order, so the bits are those of a column-by-column loop, with contiguous inner loops.
  constexpr int kBlock = 512;
  double mag[kBlock], r[kBlock];  // sum_k |w_k y_kj| and sum_k w_k y_kj
  auto sums = [&](int c0, int n, bool with_mag) {
    std::fill(r, r + n, 0.0);
    if (with_mag) std::fill(mag, mag + n, 0.0);
    for (int k = 0; k < K; ++k) {
      const double wk = weight_on_input_ ? 1.0 : w[k];
      const double* yk = y + static_cast<std::size_t>(k) * H + c0;
      for (int i = 0; i < n; ++i) r[i] += wk * yk[i];
      if (with_mag)
        for (int i = 0; i < n; ++i) mag[i] += std::fabs(wk * yk[i]);
    }
  };
  double shared_max = 0;
  if (final_ref && num_shared_ > 0)
    for (int c0 = 0; c0 < H; c0 += kBlock) {
      const int n = std::min(kBlock, H - c0);
      sums(c0, n, false);
      for (int i = 0; i < n; ++i) shared_max = std::max(shared_max, std::fabs(final_ref[c0 + i] - scale_ * r[i]));
    }
  for (int c0 = 0; c0 < H; c0 += kBlock) {
    const int n = std::min(kBlock, H - c0);
    sums(c0, n, true);
    for (int i = 0; i < n; ++i) {
      const int j = c0 + i;
      const double routed = sum_ * mag[i] + carried;
      if (combine_out) combine_out[j] = routed;
      if (!final_out) continue;
      const double shared = num_shared_ > 0 ? std::fabs(final_ref[j] - scale_ * r[i]) : 0;
      final_out[j] = scale_ * routed + scaling_ * scale_ * mag[i] + add_shared_ * (scale_ * mag[i] + shared) +
               sum_shared_ * shared + shared_expert_ * shared_max;
    }
  }
}

std::string Budget::label() const { return "the " + std::string(name(coarser_)) + " rounding bound"; }

std::string place_text(const Place& p) {
  std::string s;
  auto part = [&](const char* what, std::int64_t v) {
    if (v >= 0) s += (s.empty() ? "" : ", ") + std::string(what) + " " + std::to_string(v);
  };
  part("layer", p.layer);
  part("rank", p.rank);
  part("token", p.token);
  part("row", p.row);
  part("slot", p.slot);
  part("column", p.column);
  return s;
}

bool Worst::add(double r, const Place& p, const std::string& ds) {
  if (!(r > ratio)) return false;
  ratio = r;
  at = p;
  dataset = ds;
  return true;
}

std::string verdict_text(const std::string& label, const Worst& w) {
  if (w.within()) return "within " + label + " (worst element used " + ratio_text(w.ratio) + " of it)";
  const std::string where = place_text(w.at);
  const std::string at = (where.empty() ? "" : " at " + where) + (w.dataset.empty() ? "" : " (" + w.dataset + ")");
  if (std::isinf(w.ratio)) return "exceeds " + label + at + ": a value that allows no rounding differs, or is not finite";
  return "exceeds " + label + " by " + ratio_text(w.ratio) + "x" + at;
}

}  // namespace moesim::bound
