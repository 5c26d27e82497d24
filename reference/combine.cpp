#include "combine.hpp"

#include <algorithm>

#include "dtype.hpp"

namespace moesim {
namespace {

template <class T>
inline T rounded(T v, bool bf16) {
  return bf16 ? static_cast<T>(round_bf16(static_cast<float>(v))) : v;
}


template <class T>
void combine_impl(const CombineSpec& spec, int hidden, int top_k, const T* const* slot_out, const float* weights,
                  const T* shared, T* out, const std::int32_t* ids) {
  const bool rnd = rounds_bf16(spec.numerics);
  const bool hf = spec.numerics == Numerics::hf_bf16;
  const T scale = static_cast<T>(spec.routed_scaling_factor);
  // Hugging Face eager adds the experts' outputs in ascending expert order (one index_add_ each).
  int order[64];
  for (int k = 0; k < top_k; ++k) order[k] = k;
  if (hf && ids)
    std::stable_sort(order, order + top_k, [&](int a, int b) { return ids[a] < ids[b]; });
  // Columns in blocks, slot after slot within a block: each column's sum still runs over the
  // slots in order from +0, so the bits are those of a column-by-column loop, and the inner
  // loops are over contiguous columns (vectorized).
  constexpr int kBlock = 512;
  T acc[kBlock];
  for (int c0 = 0; c0 < hidden; c0 += kBlock) {
    const int n = std::min(kBlock, hidden - c0);
    std::fill(acc, acc + n, T(0));
    for (int j = 0; j < top_k; ++j) {
      const int k = order[j];
      if (!slot_out[k]) continue;
      const T* s = slot_out[k] + c0;
      const T w = spec.router_weight_on_input ? T(1) : static_cast<T>(weights[k]);  // weights unread then
      if (hf) {
        for (int i = 0; i < n; ++i) {
          const T term = spec.router_weight_on_input ? s[i] : w * s[i];
          acc[i] = rounded(acc[i] + rounded(term, true), true);
        }
      } else if (spec.router_weight_on_input) {
        for (int i = 0; i < n; ++i) acc[i] = acc[i] + s[i];
      } else {
        for (int i = 0; i < n; ++i) acc[i] = acc[i] + w * s[i];
      }
    }
    for (int i = 0; i < n; ++i) {
      T r = rounded(acc[i], rnd);
      if (spec.routed_scaling_factor != 1.0) r = rounded(r * scale, rnd);
      if (shared) r = rounded(r + shared[c0 + i], rnd);
      out[c0 + i] = r;
    }
  }
}

template <class T>
void sum_shared_impl(const CombineSpec& spec, int hidden, int num_shared, const T* const* outs, T* out) {
  const bool rnd = rounds_bf16(spec.numerics);
  for (int c = 0; c < hidden; ++c) {
    T acc = T(0);
    for (int s = 0; s < num_shared; ++s) acc = acc + outs[s][c];
    out[c] = rounded(acc, rnd);
  }
}

}  // namespace

void combine_token(const CombineSpec& spec, int hidden, int top_k, const double* const* slot_out,
                   const float* weights, const double* shared, double* out, const std::int32_t* ids) {
  combine_impl(spec, hidden, top_k, slot_out, weights, shared, out, ids);
}
void combine_token(const CombineSpec& spec, int hidden, int top_k, const float* const* slot_out,
                   const float* weights, const float* shared, float* out, const std::int32_t* ids) {
  combine_impl(spec, hidden, top_k, slot_out, weights, shared, out, ids);
}
void sum_shared(const CombineSpec& spec, int hidden, int num_shared, const double* const* outs, double* out) {
  sum_shared_impl(spec, hidden, num_shared, outs, out);
}
void sum_shared(const CombineSpec& spec, int hidden, int num_shared, const float* const* outs, float* out) {
  sum_shared_impl(spec, hidden, num_shared, outs, out);
}

}  // namespace moesim
