#include "expert.hpp"

#include <algorithm>
#include <string>

#include "activation.hpp"  // the activations the GPU kernels use too (fmath, NUMERICS.md)
#include "epilogue.hpp"
#include "error.hpp"
#include "gemm.hpp"
#include "quantize.hpp"

namespace moesim {
namespace {

constexpr std::int64_t kRowChunk = 256;  // rows per pass, bounding the intermediate buffers


template <class T>
inline T maybe_bf16(T v, bool round) {
  return round ? static_cast<T>(round_bf16(static_cast<float>(v))) : v;
}

template <class T>
void input_row(const TokenRows& in, std::int64_t row, int H, const ExpertOptions& o, T* out) {
  const bool fp8_tokens = is_fp8(o.token_dtype);
  const int nb = (H + o.scale_block - 1) / o.scale_block;
  const float* x = in.x + row * H;
  const float* s = fp8_tokens ? in.scales + row * nb : nullptr;
  if (fp8_tokens && !in.scales) throw Error("fp8 token rows need their scales");
  const bool weighted = in.input_weights != nullptr;
  const T w = weighted ? static_cast<T>(in.input_weights[row]) : T(1);
  const bool rnd = rounds_bf16(o.numerics);
  for (int c = 0; c < H; ++c) {
    T v = fp8_tokens ? static_cast<T>(x[c]) * static_cast<T>(s[c / o.scale_block]) : static_cast<T>(x[c]);
    if (weighted) v = maybe_bf16(w * v, rnd);  // a bf16 stack multiplies in fp32 and stores bf16
    out[c] = v;
  }
  if (o.numerics == Numerics::fp8) {
    // Dispatch quantization, unless the stored fp8 row passes through untouched.
    if (!fp8_tokens || weighted) {
      std::vector<float> src(out, out + H), q(H), qs(nb);
      const DType fmt = fp8_tokens ? o.token_dtype : o.fp8_format;
      if (!is_fp8(fmt)) throw Error("fp8 format must be e4m3 or e4m3fnuz, not " + std::string(name(fmt)));
      quantize_blocks(src.data(), 1, H, o.scale_block, fmt, q.data(), qs.data());
      for (int c = 0; c < H; ++c) out[c] = static_cast<T>(q[c] * qs[c / o.scale_block]);
    }
  } else if (o.numerics == Numerics::bf16 || o.numerics == Numerics::hf_bf16) {
    for (int c = 0; c < H; ++c) out[c] = maybe_bf16(out[c], true);
  }
}

// Hugging Face eager bf16: a GEMM's bf16 output, then the bias as its own bf16 add.
template <class T>
T biased_hf(T v, const T* b) {
  const T r = maybe_bf16(v, true);
  return b ? maybe_bf16(r + *b, true) : r;
}

// Hugging Face eager bf16 act(gate) * up: each tensor op rounds to bf16. SiLU and the GELUs are
// one op each (computed in float32, rounded once); GPT-OSS's clamped SwiGLU is five: gate * alpha,
// sigmoid, gate * sigmoid, up + 1 and the product (the clamps select a bf16 value exactly).
template <class T>
T hf_gated(Activation a, T gate, T up, T alpha, T limit) {
  auto rb = [](T v) { return maybe_bf16(v, true); };
  if (a != Activation::swiglu_oai) return rb(rb(apply_activation(a, gate)) * up);
  const T one = T(1);
  const T g = gate > limit ? limit : gate;
  const T u = up > limit ? limit : (up < -limit ? -limit : up);
  const T t = rb(g * alpha);
  const T sig = rb(one / (one + detail::act_exp(-t)));
  return rb(rb(u + one) * rb(g * sig));
}

template <class T, class D, class F>
auto& pick(D& d, F& f) {
  if constexpr (sizeof(T) == 8) return d;
  else return f;
}

}  // namespace

struct ExpertKernel {
  template <class T>
  static void run(const PreparedExpert& e, const TokenRows& in, const ExpertOptions& o, T* out,
                  ExpertWorkspace* workspace) {
    if (o.numerics != e.numerics_)
      throw Error("expert prepared for " + std::string(name(e.numerics_)) + " numerics run with " +
                  std::string(name(o.numerics)));
    if ((sizeof(T) == 8) != is_f64(e.numerics_))
      throw Error("expert output type does not match numerics " + std::string(name(e.numerics_)));
    const int P = gemm::panel_width<T>();
    const int H = e.hidden_, I = e.inter_;
    const int rows1 = e.gated_ ? 2 * I : I;
    const std::int64_t ld1 = gemm::padded(rows1, P), ld2 = gemm::padded(H, P);
    const bool rnd = rounds_bf16(e.numerics_);
    // Where both operands are bf16 values (NUMERICS.md): GEMM1 in bf16 mode (fp8 mode's dequantized
    // rows are wider), GEMM2 in bf16 and fp8.
    const bool fuse1 = e.numerics_ == Numerics::bf16 || e.numerics_ == Numerics::hf_bf16, fuse2 = rnd;
    // Hugging Face eager: the bias is a separate bf16 add after the GEMM's bf16 output, and
    // every op of the activation rounds (hf_gated).
    const bool hf = e.numerics_ == Numerics::hf_bf16;
    const std::vector<T>& w1 = pick<T>(e.w1_f64_, e.w1_f32_);
    const std::vector<T>& w2 = pick<T>(e.w2_f64_, e.w2_f32_);
    const std::vector<T>& b1 = pick<T>(e.b1_f64_, e.b1_f32_);
    const std::vector<T>& b2 = pick<T>(e.b2_f64_, e.b2_f32_);
    const bool bias = !b1.empty();
    const bool silu_epilogue = !hf && e.gated_ && e.activation_ == Activation::silu_gated;
    const T alpha = static_cast<T>(e.alpha_), limit = static_cast<T>(e.limit_);
    const std::int64_t chunk = std::min<std::int64_t>(kRowChunk, std::max<std::int64_t>(in.rows, 1));
    ExpertWorkspace local;
    ExpertWorkspace& ws = workspace ? *workspace : local;
    std::vector<T>& buf = pick<T>(ws.f64, ws.f32);
    const std::size_t na = chunk * H, ng = chunk * ld1, nh = chunk * I, ny = chunk * ld2;
    const std::size_t total = na + ng + nh + ny + gemm::scratch_size<T>(chunk, std::max(H, I));
    if (buf.size() < total) buf.resize(total);
    T* a = buf.data();
    T* g = a + na;
    T* h = g + ng;
    T* y = h + nh;
    T* scratch = y + ny;
    for (std::int64_t r0 = 0; r0 < in.rows; r0 += chunk) {
      const std::int64_t n = std::min(chunk, in.rows - r0);
      for (std::int64_t r = 0; r < n; ++r) input_row<T>(in, r0 + r, H, o, a + r * H);
      gemm::multiply<T>(a, n, H, w1, rows1, H, g, ld1, scratch, fuse1);
      for (std::int64_t r = 0; r < n; ++r) {
        const T* gr = g + r * ld1;
        T* hr = h + r * I;
        if constexpr (sizeof(T) == 4) {
          if (silu_epilogue) {  // the common case, vectorized (epilogue.hpp)
            epilogue::silu_gated(gr, gr + I, bias ? &b1[0] : nullptr, bias ? &b1[I] : nullptr, I, rnd, hr);
            continue;
          }
        }
        for (int i = 0; i < I; ++i) {
          // GEMM1 output (plus its bias) stored as bf16
          const T gate = hf ? biased_hf(gr[i], bias ? &b1[i] : nullptr) : maybe_bf16(bias ? gr[i] + b1[i] : gr[i], rnd);
          if (e.gated_) {
            const T up = hf ? biased_hf(gr[I + i], bias ? &b1[I + i] : nullptr)
                            : maybe_bf16(bias ? gr[I + i] + b1[I + i] : gr[I + i], rnd);
            hr[i] = hf ? hf_gated(e.activation_, gate, up, alpha, limit)
                       : maybe_bf16(apply_gated(e.activation_, gate, up, alpha, limit), rnd);
          } else {
            hr[i] = maybe_bf16(apply_activation(e.activation_, gate), rnd);
          }
        }
      }
      gemm::multiply<T>(h, n, I, w2, H, I, y, ld2, scratch, fuse2);
      for (std::int64_t r = 0; r < n; ++r)
        for (int c = 0; c < H; ++c)
          out[(r0 + r) * H + c] = hf ? biased_hf(y[r * ld2 + c], bias ? &b2[c] : nullptr)
                                     : maybe_bf16(bias ? y[r * ld2 + c] + b2[c] : y[r * ld2 + c], rnd);
    }
  }
};

PreparedExpert::PreparedExpert(const ExpertMatrices& m, Activation activation, Numerics numerics, double alpha,
                               double limit) {
  assign(m, activation, numerics, alpha, limit);
}

namespace {
// Biases are converted like weights: to the compute type, bf16-rounded in bf16/fp8 modes.
template <class T>
void convert_bias(const std::vector<float>& b, bool rnd, std::vector<T>& out) {
  out.resize(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) out[i] = static_cast<T>(rnd ? round_bf16(b[i]) : b[i]);
}
}  // namespace

void PreparedExpert::assign(const ExpertMatrices& m, Activation activation, Numerics numerics, double alpha,
                            double limit) {
  if (m.gated != is_gated(activation)) throw Error("expert matrices do not match the activation");
  if (m.w1.size() != static_cast<std::size_t>(m.rows1()) * m.hidden ||
      m.w2.size() != static_cast<std::size_t>(m.hidden) * m.inter)
    throw Error("expert matrices have the wrong size");
  if ((!m.b1.empty() || !m.b2.empty()) && (m.b1.size() != static_cast<std::size_t>(m.rows1()) ||
                                            m.b2.size() != static_cast<std::size_t>(m.hidden)))
    throw Error("expert biases have the wrong size");
  hidden_ = m.hidden, inter_ = m.inter, gated_ = m.gated, activation_ = activation, numerics_ = numerics;
  alpha_ = alpha, limit_ = limit;
  const bool rnd = rounds_bf16(numerics);
  b1_f64_.clear(), b2_f64_.clear(), b1_f32_.clear(), b2_f32_.clear();
  if (is_f64(numerics)) {
    convert_bias(m.b1, false, b1_f64_);
    convert_bias(m.b2, false, b2_f64_);
  } else {
    convert_bias(m.b1, rnd, b1_f32_);
    convert_bias(m.b2, rnd, b2_f32_);
  }
  if (is_f64(numerics)) {
    gemm::pack<double>(m.w1.data(), m.rows1(), m.hidden, false, w1_f64_);
    gemm::pack<double>(m.w2.data(), m.hidden, m.inter, false, w2_f64_);
  } else {
    gemm::pack<float>(m.w1.data(), m.rows1(), m.hidden, rnd, w1_f32_);
    gemm::pack<float>(m.w2.data(), m.hidden, m.inter, rnd, w2_f32_);
  }
}

void run_expert(const PreparedExpert& e, const TokenRows& in, const ExpertOptions& o, double* out,
                ExpertWorkspace* workspace) {
  ExpertKernel::run<double>(e, in, o, out, workspace);
}
void run_expert(const PreparedExpert& e, const TokenRows& in, const ExpertOptions& o, float* out,
                ExpertWorkspace* workspace) {
  ExpertKernel::run<float>(e, in, o, out, workspace);
}

void expert_input_row(const TokenRows& in, std::int64_t row, int hidden, const ExpertOptions& o, double* out) {
  input_row<double>(in, row, hidden, o, out);
}
void expert_input_row(const TokenRows& in, std::int64_t row, int hidden, const ExpertOptions& o, float* out) {
  input_row<float>(in, row, hidden, o, out);
}

double activation_value(Activation a, double x) { return apply_activation<double>(a, x); }
float activation_value(Activation a, float x) { return apply_activation<float>(a, x); }

}  // namespace moesim
