#include "diagnose_products.hpp"

#include <algorithm>

namespace moesim::sim {

SharedProducts::SharedProducts(ExpertBackend& inner, int hidden, std::int64_t budget_bytes)
    : inner_(inner), hidden_(hidden), budget_(budget_bytes) {}

void SharedProducts::run(const ExpertTask& task, double* out, int worker) { serve(task, out, worker, f64_); }
void SharedProducts::run(const ExpertTask& task, float* out, int worker) { serve(task, out, worker, f32_); }

template <class T>
void SharedProducts::serve(const ExpertTask& task, T* out, int worker,
                           std::map<std::tuple<int, int, int, std::int64_t>, std::vector<T>>& store) {
  // A row scaled by its router weight on the input, or a shared expert's, is not keyed by token alone.
  if (task.shared || task.input_weights) {
    inner_.run(task, out, worker);
    return;
  }
  const int H = hidden_;
  auto dest = [&](std::int64_t j) { return task.out_rows ? static_cast<T*>(task.out_rows[j]) : out + j * H; };
  auto key = [&](std::int64_t j) {
    return std::tuple<int, int, int, std::int64_t>{task.layer_pos, task.expert, task.rows[j].rank, task.rows[j].token};
  };
  std::vector<std::int64_t> missing;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::int64_t j = 0; j < task.num_rows; ++j) {
      auto it = store.find(key(j));
      if (it == store.end()) {
        missing.push_back(j);
        continue;
      }
      std::copy(it->second.begin(), it->second.end(), dest(j));
      ++reused_;
    }
  }
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
  inner_.run(sub, static_cast<T*>(nullptr), worker);
  std::lock_guard<std::mutex> lock(mutex_);
  computed_ += sub.num_rows;
  for (std::int64_t j : missing) {
    const std::int64_t bytes = static_cast<std::int64_t>(H * sizeof(T));
    if (used_ + bytes > budget_) break;
    const T* row = dest(j);
    if (store.try_emplace(key(j), row, row + H).second) used_ += bytes;
  }
}

}  // namespace moesim::sim
