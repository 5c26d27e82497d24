#pragma once
// The expert products of moesim diagnose computed once: the hypotheses of its catalog mostly send
// the same source tokens to the same experts, and a row's output bits depend only on the row and
// the expert (expert_backend.hpp), so a product stored the first time is the exact result every
// later hypothesis would compute. Rows beyond a memory budget are computed as they come.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "expert_backend.hpp"

namespace moesim::sim {

class SharedProducts : public ExpertBackend {
 public:
  // `inner` computes what is not stored yet; at most `budget_bytes` of outputs are kept. Stored
  // rows are served on up to `threads` workers at once even where `inner` takes fewer (one GPU):
  // those share its workers in turn.
  SharedProducts(ExpertBackend& inner, int hidden, std::int64_t budget_bytes, int threads);
  std::string name() const override { return inner_.name(); }
  int workers(int threads) const override { return std::max(1, threads); }
  void run(const ExpertTask& task, double* out, int worker) override;
  void run(const ExpertTask& task, float* out, int worker) override;
  std::int64_t computed() const { return computed_; }  // rows the inner backend computed
  std::int64_t reused() const { return reused_; }      // rows served from the store

 private:
  template <class T>
  void serve(const ExpertTask& task, T* out, int worker, std::map<std::tuple<int, int, int, std::int64_t>, std::vector<T>>& store);

  ExpertBackend& inner_;
  int hidden_;
  std::int64_t budget_;
  std::int64_t used_ = 0;
  std::int64_t computed_ = 0, reused_ = 0;
  int inner_workers_;
  std::unique_ptr<std::mutex[]> inner_busy_;  // one per worker of `inner`
  std::mutex mutex_;  // the store and the counts
  // (layer, expert, source rank, token) -> H outputs
  std::map<std::tuple<int, int, int, std::int64_t>, std::vector<double>> f64_;
  std::map<std::tuple<int, int, int, std::int64_t>, std::vector<float>> f32_;
};

// For a trace whose every token holds the same row (the warm-up hypothesis' copy): each task's
// row computed once by `inner` and copied to the others, which would compute the same bits. With
// `as`, the row computed is that token of `inner`'s own trace (at layer `as_layer`), which holds
// the same bits: the main backend (a GPU's) then serves the copy too.
class IdenticalRows : public ExpertBackend {
 public:
  IdenticalRows(ExpertBackend& inner, int hidden, int as_layer = -1, TokenRef as = {})
      : inner_(inner), hidden_(hidden), as_layer_(as_layer), as_(as) {}
  std::string name() const override { return inner_.name(); }
  int workers(int threads) const override { return inner_.workers(threads); }
  void run(const ExpertTask& task, double* out, int worker) override;
  void run(const ExpertTask& task, float* out, int worker) override;

 private:
  template <class T>
  void one_row(const ExpertTask& task, T* out, int worker);

  ExpertBackend& inner_;
  int hidden_;
  int as_layer_;
  TokenRef as_;
};

}  // namespace moesim::sim
