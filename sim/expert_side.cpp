#include "expert_side.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "error.hpp"
#include "parallel.hpp"

namespace moesim::sim {

namespace {

template <class T>
std::vector<T>& vec(Values& v);
template <>
std::vector<double>& vec<double>(Values& v) { return v.f64; }
template <>
std::vector<float>& vec<float>(Values& v) { return v.f32; }

// v as a zeroed [n] vector of T (float64 in exact mode).
template <class T>
std::vector<T>& zeroed(Values& v, std::size_t n) {
  v.wide = std::is_same_v<T, double>;
  auto& out = vec<T>(v);
  out.assign(n, T(0));
  return out;
}

struct PlannedJob {
  int dest;
  std::int64_t row;
  Job job;
};

// Identity experts: every row returns the row its expert would see, and each slot's expert_out
// is the row that carries it.
template <class T>
void identity_side(const Trace& tr, int lp, const Dispatch& d, const SimOptions& o, std::vector<RankRun>& out) {
  const TraceConfig& c = tr.config;
  const Layer& layer = tr.layers[lp];
  const int R = c.num_ranks, K = c.top_k, H = c.hidden, S = c.scales_per_token();
  ReferenceOptions ro;
  ro.numerics = o.numerics;
  ro.fp8_format = o.fp8_format;
  const ExpertOptions eo = expert_options(c, ro);
  auto input_of = [&](int src, std::int64_t token, T* y) {
    const RankInput& in = layer.ranks[src];
    TokenRows rows;
    rows.x = &in.x[token * H];
    rows.scales = in.x_scales.empty() ? nullptr : &in.x_scales[token * S];
    rows.rows = 1;
    expert_input_row(rows, 0, H, eo, y);
  };
  for (int r = 0; r < R; ++r) {
    const RecvBuffer& b = d.ranks[r];
    auto& rows = zeroed<T>(out[r].expert_rows, b.total_recv * H);
    for (std::int64_t i = 0; i < b.total_recv; ++i) input_of(b.src_rank[i], b.src_token[i], &rows[i * H]);
  }
  for (int s = 0; s < R; ++s) {
    const std::int64_t T_s = layer.ranks[s].num_tokens;
    auto& eo_s = zeroed<T>(out[s].expert_out, T_s * K * H);
    for (std::int64_t t = 0; t < T_s; ++t)
      for (int k = 0; k < K; ++k)
        if (d.slot_row[s][t * K + k] >= 0) input_of(s, t, &eo_s[(t * K + k) * H]);
  }
}

template <class T>
void expert_side(const Trace& tr, int lp, const WeightProvider& wp, const ExpertMap& map, const Dispatch& d,
                 const SimOptions& o, std::vector<RankRun>& out) {
  const TraceConfig& c = tr.config;
  const Layer& layer = tr.layers[lp];
  const int R = c.num_ranks, K = c.top_k, H = c.hidden;

  // 1. Plan every row's jobs; dedup-filter's later copies of a source token reuse its first row.
  std::vector<PlannedJob> jobs;
  std::vector<std::vector<std::int64_t>> job_begin(R), dup_of(R);
  std::vector<Job> tmp(K);
  std::vector<std::vector<std::int64_t>> first_row(R);  // reset after each rank, entry by entry
  for (int s = 0; s < R; ++s) first_row[s].assign(layer.ranks[s].num_tokens, -1);
  for (int r = 0; r < R; ++r) {
    const RecvBuffer& b = d.ranks[r];
    job_begin[r].assign(b.total_recv + 1, static_cast<std::int64_t>(jobs.size()));
    dup_of[r].assign(b.total_recv, -1);
    for (std::int64_t i = 0; i < b.total_recv; ++i) {
      auto& f = first_row[b.src_rank[i]][b.src_token[i]];
      const bool first = f < 0;
      if (first) f = i;
      else if (o.consumer.model == ConsumerModel::dedup_filter) dup_of[r][i] = f;
      const int n = plan_row(o.consumer, map, r, K, &b.ids[i * K], b.target[i], b.slot[i], first, tmp.data());
      for (int j = 0; j < n; ++j) jobs.push_back({r, i, tmp[j]});
      job_begin[r][i + 1] = static_cast<std::int64_t>(jobs.size());
    }
    for (std::int64_t i = 0; i < b.total_recv; ++i) first_row[b.src_rank[i]][b.src_token[i]] = -1;
  }

  if (o.consumer.model == ConsumerModel::identity) {
    identity_side<T>(tr, lp, d, o, out);
    return;
  }

  // 2-5 for chunks of consecutive destination ranks whose jobs' outputs fit o.job_budget (every
  // rank at once unless they do not; at least one rank). A job's output depends only on its row
  // and expert, and each row's partial and each slot's output only on its own jobs, so the
  // chunking changes no bit; it bounds the [jobs, H] buffer (a whole-buffer all-k consumer at the
  // seed's scale would need 120 GB at once).
  ReferenceOptions ro;
  ro.numerics = o.numerics;
  ro.fp8_format = o.fp8_format;
  const ExpertOptions eo = expert_options(c, ro);
  std::unique_ptr<ExpertBackend> cpu;
  ExpertBackend* backend = o.backend;
  if (!backend) backend = (cpu = make_cpu_backend(tr, wp)).get();
  CombineSpec partial = combine_spec(c, o.numerics);
  partial.routed_scaling_factor = 1.0;
  std::vector<std::int64_t> first_job(R + 1, static_cast<std::int64_t>(jobs.size()));  // jobs are in rank order
  for (int r = 0; r < R; ++r) first_job[r] = job_begin[r][0];
  parallel_items(static_cast<std::size_t>(R), o.threads, [&](std::size_t s) {
    zeroed<T>(out[s].expert_out, static_cast<std::size_t>(layer.ranks[s].num_tokens) * K * H);
  });
  std::vector<T> own;
  if (o.scratch) o.scratch->job_out.wide = std::is_same_v<T, double>;
  std::vector<T>& job_out = o.scratch ? vec<T>(o.scratch->job_out) : own;
  const std::int64_t row_bytes = static_cast<std::int64_t>(H) * static_cast<std::int64_t>(sizeof(T));
  std::vector<std::vector<std::size_t>> by_expert(map.num_logical);
  for (int r0 = 0, r1; r0 < R; r0 = r1) {
    r1 = r0 + 1;
    while (r1 < R && (first_job[r1 + 1] - first_job[r0]) * row_bytes <= o.job_budget) ++r1;
    const std::int64_t base = first_job[r0], n_jobs = first_job[r1] - base;
    auto out_of = [&](std::int64_t j) { return &job_out[static_cast<std::size_t>(j - base) * H]; };

    // 2. This chunk's jobs grouped by logical expert, in ascending expert order.
    for (auto& list : by_expert) list.clear();
    for (std::int64_t j = base; j < base + n_jobs; ++j)
      by_expert[map.logical_of[jobs[j].job.expert]].push_back(static_cast<std::size_t>(j));
    std::vector<int> active;
    for (int l = 0; l < map.num_logical; ++l)
      if (!by_expert[l].empty()) active.push_back(l);

    // 3. One backend call per logical expert (the reference FFN unless the run picked a GPU).
    // Every element is written by its job's call, so reused storage needs no clearing.
    if (job_out.capacity() < static_cast<std::size_t>(n_jobs) * H) job_out = std::vector<T>();  // no copy of what it held
    job_out.resize(static_cast<std::size_t>(n_jobs) * H);
    parallel_items(active.size(), backend->workers(o.threads), [&](std::size_t a, int worker) {
      const int l = active[a];
      const auto& list = by_expert[l];
      const std::int64_t n = static_cast<std::int64_t>(list.size());
      std::vector<TokenRef> rows(n);
      std::vector<float> iw(c.router_weight_on_input ? n : 0);
      for (std::int64_t i = 0; i < n; ++i) {
        const PlannedJob& pj = jobs[list[i]];
        const RecvBuffer& b = d.ranks[pj.dest];
        rows[i] = {b.src_rank[pj.row], b.src_token[pj.row]};
        if (c.router_weight_on_input) iw[i] = b.weights[pj.row * K + pj.job.slot];
      }
      ExpertTask task;
      task.layer_pos = lp;
      task.expert = l;
      task.options = eo;
      task.rows = rows.data();
      task.num_rows = n;
      task.input_weights = c.router_weight_on_input ? iw.data() : nullptr;
      std::vector<void*> dest(n);
      for (std::int64_t i = 0; i < n; ++i) dest[i] = out_of(static_cast<std::int64_t>(list[i]));
      task.out_rows = dest.data();
      backend->run(task, static_cast<T*>(nullptr), worker);
    });

    // 4. Each row's partial from its jobs, in blocks of rows so that a chunk of one rank (a
    // whole-buffer all-k consumer's) still runs on every thread; each block writes its own rows.
    // Steps 4 and 5 write only rank r's (source s's) own outputs: they run on the run's threads.
    constexpr std::int64_t kRowBlock = 512;
    std::vector<std::pair<int, std::int64_t>> blocks;  // (rank, first row)
    parallel_items(static_cast<std::size_t>(r1 - r0), o.threads, [&](std::size_t q) {
      zeroed<T>(out[r0 + q].expert_rows, d.ranks[r0 + q].total_recv * H);
    });
    for (int r = r0; r < r1; ++r)
      for (std::int64_t i = 0; i < d.ranks[r].total_recv; i += kRowBlock) blocks.push_back({r, i});
    parallel_items(blocks.size(), o.threads, [&](std::size_t q) {
      const auto [r, i0] = blocks[q];
      std::vector<const T*> slot_out(K);
      const RecvBuffer& b = d.ranks[r];
      auto& rows = vec<T>(out[r].expert_rows);
      for (std::int64_t i = i0; i < std::min(b.total_recv, i0 + kRowBlock); ++i) {
        const std::int64_t jb = job_begin[r][i], je = job_begin[r][i + 1];
        if (jb == je) continue;
        if (je - jb == 1 && !jobs[jb].job.weighted) {
          std::copy_n(out_of(jb), H, &rows[i * H]);
          continue;
        }
        std::fill(slot_out.begin(), slot_out.end(), nullptr);
        for (std::int64_t j = jb; j < je; ++j) slot_out[jobs[j].job.slot] = out_of(j);
        combine_token(partial, H, K, slot_out.data(), &b.weights[i * K], nullptr, &rows[i * H]);
      }
    });
    // A later copy of a source token (dedup-filter) takes its first row's partial, once every block is done.
    parallel_items(static_cast<std::size_t>(r1 - r0), o.threads, [&](std::size_t q) {
      const int r = r0 + static_cast<int>(q);
      auto& rows = vec<T>(out[r].expert_rows);
      for (std::int64_t i = 0; i < d.ranks[r].total_recv; ++i)
        if (dup_of[r][i] >= 0) std::copy_n(&rows[dup_of[r][i] * H], H, &rows[i * H]);
    });

    // 5. expert_out [T, K, H]: the job for slot k on the row that carries slot k, for the slots
    // this chunk's ranks carry.
    parallel_items(static_cast<std::size_t>(R), o.threads, [&](std::size_t source) {
      const int s = static_cast<int>(source);
      const std::int64_t T_s = layer.ranks[s].num_tokens;
      std::vector<T>& eo_s = vec<T>(out[s].expert_out);
      for (std::int64_t t = 0; t < T_s; ++t)
        for (int k = 0; k < K; ++k) {
          const int dest = d.slot_dest[s][t * K + k];
          std::int64_t row = d.slot_row[s][t * K + k];
          if (dest < r0 || dest >= r1 || row < 0) continue;
          if (dup_of[dest][row] >= 0) row = dup_of[dest][row];
          for (std::int64_t j = job_begin[dest][row]; j < job_begin[dest][row + 1]; ++j)
            if (jobs[j].job.slot == k) {
              std::copy_n(out_of(j), H, &eo_s[(t * K + k) * H]);
              break;
            }
        }
    });
  }
}

}  // namespace

void run_expert_side(const Trace& trace, int layer_pos, const WeightProvider& weights, const ExpertMap& map,
                     const Dispatch& dispatch, const SimOptions& options, std::vector<RankRun>& out) {
  if (is_f64(options.numerics))
    expert_side<double>(trace, layer_pos, weights, map, dispatch, options, out);
  else
    expert_side<float>(trace, layer_pos, weights, map, dispatch, options, out);
}

}  // namespace moesim::sim
