#include "diagnose_products.hpp"

#include <algorithm>

namespace moesim::sim {

SharedProducts::SharedProducts(ExpertBackend& inner, int hidden, std::int64_t budget_bytes, int threads)
    : inner_(inner),
      hidden_(hidden),
      budget_(budget_bytes),
      inner_workers_(std::max(1, inner.workers(threads))),
      inner_busy_(new std::mutex[static_cast<std::size_t>(inner_workers_)]) {}

void SharedProducts::run(const ExpertTask& task, double* out, int worker) { serve(task, out, worker, f64_); }
void SharedProducts::run(const ExpertTask& task, float* out, int worker) { serve(task, out, worker, f32_); }

template <class T>
void SharedProducts::serve(const ExpertTask& task, T* out, int worker,
                           std::map<std::tuple<int, int, int, std::int64_t>, std::vector<T>>& store) {
  // A row scaled by its router weight on the input, or a shared expert's, is not keyed by token alone.
  const int w = worker % inner_workers_;
  if (task.shared || task.input_weights) {
    std::lock_guard<std::mutex> busy(inner_busy_[w]);
    inner_.run(task, out, w);
    return;
  }
  const int H = hidden_;
  auto dest = [&](std::int64_t j) { return task.out_rows ? static_cast<T*>(task.out_rows[j]) : out + j * H; };
  auto key = [&](std::int64_t j) {
    return std::tuple<int, int, int, std::int64_t>{task.layer_pos, task.expert, task.rows[j].rank, task.rows[j].token};
  };
  std::vector<std::int64_t> missing;
  std::vector<std::pair<std::int64_t, const std::vector<T>*>> found;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::int64_t j = 0; j < task.num_rows; ++j) {
      auto it = store.find(key(j));
      if (it == store.end()) missing.push_back(j);
      else found.push_back({j, &it->second});
    }
    reused_ += static_cast<std::int64_t>(found.size());
  }
  // Outside the lock: a map's nodes stay in place while others are added, and none is removed.
  for (const auto& [j, row] : found) std::copy(row->begin(), row->end(), dest(j));
  if (missing.empty()) return;
  std::vector<TokenRef> rows(missing.size());
  std::vector<void*> to(missing.size());
  for (std::size_t q = 0; q < missing.size(); ++q) {
    rows[q] = task.rows[missing[q]];
    to[q] = dest(missing[q]);
  }
  ExpertTask sub = task;
  sub.rows = rows.data();
  sub.num_rows = static_cast<std::int64_t>(rows.size());
  sub.out_rows = to.data();
  {
    std::lock_guard<std::mutex> busy(inner_busy_[w]);
    inner_.run(sub, static_cast<T*>(nullptr), w);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  computed_ += sub.num_rows;
  for (std::int64_t j : missing) {
    const std::int64_t bytes = static_cast<std::int64_t>(H * sizeof(T));
    if (used_ + bytes > budget_) break;
    const T* row = dest(j);
    if (store.try_emplace(key(j), row, row + H).second) used_ += bytes;
  }
}

template <class T>
void IdenticalRows::one_row(const ExpertTask& task, T* out, int worker) {
  if (task.input_weights || (task.num_rows <= 1 && as_layer_ < 0)) {  // a row scaled by its own weight differs
    inner_.run(task, out, worker);
    return;
  }
  const int H = hidden_;
  auto dest = [&](std::int64_t j) { return task.out_rows ? static_cast<T*>(task.out_rows[j]) : out + j * H; };
  void* first = dest(0);
  ExpertTask one = task;
  one.num_rows = 1;
  one.out_rows = &first;
  if (as_layer_ >= 0) one.layer_pos = as_layer_, one.rows = &as_;
  inner_.run(one, static_cast<T*>(nullptr), worker);
  for (std::int64_t j = 1; j < task.num_rows; ++j) std::copy_n(dest(0), H, dest(j));
}

void IdenticalRows::run(const ExpertTask& task, double* out, int worker) { one_row(task, out, worker); }
void IdenticalRows::run(const ExpertTask& task, float* out, int worker) { one_row(task, out, worker); }

}  // namespace moesim::sim
