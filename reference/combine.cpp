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
  for (int c = 0; c < hidden; ++c) {
    T acc = T(0);
    for (int j = 0; j < top_k; ++j) {
      const int k = order[j];
      if (!slot_out[k]) continue;
      const T term = spec.router_weight_on_input ? slot_out[k][c] : static_cast<T>(weights[k]) * slot_out[k][c];
      acc = hf ? rounded(acc + rounded(term, true), true) : acc + term;
    }
    T r = rounded(acc, rnd);
    if (spec.routed_scaling_factor != 1.0) r = rounded(r * scale, rnd);
    if (shared) r = rounded(r + shared[c], rnd);
    out[c] = r;
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
