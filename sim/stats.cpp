#include "stats.hpp"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <string>

#include "error.hpp"
#include "route.hpp"
#include "stats_frame.hpp"

namespace moesim::sim {

namespace {
std::int64_t sum(const std::vector<std::int64_t>& v) { return std::accumulate(v.begin(), v.end(), std::int64_t{0}); }
}  // namespace

std::int64_t RoutingStats::total_rows() const { return sum(rows_per_rank); }
std::int64_t RoutingStats::total_sources() const { return sum(sources_per_rank); }
std::int64_t RoutingStats::total_needed() const { return sum(needed_per_rank); }
std::int64_t RoutingStats::total_performed() const { return sum(performed_per_rank); }
std::int64_t RoutingStats::total_overflow() const { return sum(overflow_per_rank); }
double RoutingStats::duplication() const {
  const auto s = total_sources();
  return s ? static_cast<double>(total_rows()) / static_cast<double>(s) : 1.0;
}
double RoutingStats::waste() const {
  const auto n = total_needed();
  return n ? static_cast<double>(total_performed()) / static_cast<double>(n) : 1.0;
}
double RoutingStats::imbalance(const std::vector<std::int64_t>& v) {
  if (v.empty()) return 1.0;
  const double mean = static_cast<double>(sum(v)) / static_cast<double>(v.size());
  return mean > 0 ? static_cast<double>(*std::max_element(v.begin(), v.end())) / mean : 1.0;
}

StatsFrame start_stats(const StatsInput& in, const std::vector<SourceRouting>& sources) {
  const ExpertMap& map = *in.map;
  const int R = map.num_ranks, E = map.num_experts, K = in.top_k;
  StatsFrame f;
  RoutingStats& s = f.stats;
  s.num_ranks = R;
  s.num_experts = E;
  for (auto* v : {&s.rows_per_rank, &s.sources_per_rank, &s.overflow_per_rank, &s.stale_rows_per_rank,
                  &s.buffer_rows_per_rank, &s.needed_per_rank, &s.performed_per_rank})
    v->assign(R, 0);
  for (auto* v : {&s.rows_per_expert, &s.needed_per_expert, &s.performed_per_expert}) v->assign(E, 0);
  s.dispatch_bytes.assign(static_cast<std::size_t>(R) * R, 0);
  s.combine_bytes.assign(static_cast<std::size_t>(R) * R, 0);

  const std::int64_t max_tokens = in.max_tokens > 0 ? in.max_tokens : default_max_tokens(sources);
  const std::int64_t tok = byte_size(in.token_dtype);
  const std::int64_t scales = is_fp8(in.token_dtype) ? 4LL * ((in.hidden + in.scale_block - 1) / in.scale_block) : 0;
  f.send_row = in.hidden * tok + scales, f.back_row = in.hidden * tok;

  // Capacity per receive block (dispatch.hpp, block_capacity): a destination's whole buffer, one
  // of its local experts, or (deepep-ll) one (local expert, source rank).
  f.expert_major = expert_major(in.dispatch.model);
  f.per_source = in.dispatch.model == DispatchModel::deepep_ll;
  const std::int64_t block_cap = block_capacity(in.dispatch, R, map.max_local, K, max_tokens);
  f.cap = block_cap < 0 ? INT64_MAX : block_cap;
  for (int d = 0; d < R; ++d) s.buffer_rows_per_rank[d] = buffer_rows(in.dispatch, R, map.max_local, K, max_tokens);
  return f;
}

void finish_stats(const StatsInput& in, RoutingStats& s, std::chrono::steady_clock::time_point start) {
  const ExpertMap& map = *in.map;
  const int R = map.num_ranks, K = in.top_k;
  if (reads_stale_rows(in.consumer, in.dispatch.model)) {
    std::vector<std::int32_t> zero_ids(K, 0);
    std::vector<Job> jobs(K);
    for (int d = 0; d < R; ++d) {
      const std::int64_t stale = std::max<std::int64_t>(0, s.buffer_rows_per_rank[d] - s.rows_per_rank[d]);
      s.stale_rows_per_rank[d] = stale;
      const int nj = plan_row(in.consumer, map, d, K, zero_ids.data(), -1, 0, true, jobs.data());
      s.performed_per_rank[d] += stale * nj;
      for (int j = 0; j < nj; ++j) s.performed_per_expert[jobs[j].expert] += stale;
    }
  }
  for (int d = 0; d < R; ++d)
    if (s.buffer_rows_per_rank[d] < 0) s.buffer_rows_per_rank[d] = s.rows_per_rank[d];  // sized exactly
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

RoutingStats routing_stats_by_rows(const StatsInput& in, const std::vector<SourceRouting>& sources,
                                   const Dispatch* dispatched) {
  const auto start = std::chrono::steady_clock::now();
  const ExpertMap& map = *in.map;
  const int R = map.num_ranks, K = in.top_k;
  const DispatchOptions& o = in.dispatch;
  StatsFrame f = start_stats(in, sources);
  RoutingStats& s = f.stats;
  const bool em = f.expert_major;
  const int num_s = f.per_source ? R : 1;
  const std::int64_t cap = f.cap;
  std::vector<std::int64_t> arrived(static_cast<std::size_t>(R) * (em ? map.max_local : 1) * num_s, 0);

  std::vector<RowDest> rows(K);
  std::vector<std::int32_t> ids(K);
  std::vector<float> w(K);
  std::vector<Job> jobs(K);
  std::vector<int> first_dests;
  // Rows per (source, destination) of the current source rank; bytes follow once per rank.
  std::vector<std::int64_t> pair_rows(R);
  for (int r = 0; r < R; ++r) {
    const auto& src = sources[r];
    std::fill(pair_rows.begin(), pair_rows.end(), 0);
    s.tokens += src.num_tokens;
    for (std::int64_t t = 0; t < src.num_tokens; ++t) {
      const std::int32_t* row_ids = &src.ids[t * K];
      const float* row_w = &src.weights[t * K];
      for (int k = 0; k < K; ++k)
        if (row_ids[k] >= 0) {
          ++s.pairs;
          ++s.needed_per_expert[row_ids[k]];
          ++s.needed_per_rank[map.rank_of[row_ids[k]]];
        }
      const int n = route_token(map, o, K, row_ids, rows.data());
      first_dests.clear();
      for (int i = 0; i < n; ++i) {
        const RowDest& rd = rows[i];
        const int d = rd.dest;
        const std::size_t block = em ? static_cast<std::size_t>(d) * map.max_local + map.local_of[rd.target] : d;
        std::int64_t& a = arrived[block * num_s + (num_s > 1 ? r : 0)];
        if (dispatched) {
          if (dispatched->slot_row[r][t * K + rd.slot] < 0) {
            ++s.overflow_per_rank[d];
            continue;
          }
        } else if (a >= cap) {
          if (o.overflow == Overflow::error)
            throw Error("rank " + std::to_string(d) + " receive buffer overflow: more than " + std::to_string(cap) +
                        " rows (raise max tokens per rank, or --overflow drop to model the silent drop)");
          ++s.overflow_per_rank[d];
          continue;
        }
        ++a;
        ++s.rows_per_rank[d];
        const bool first = std::find(first_dests.begin(), first_dests.end(), d) == first_dests.end();
        if (first) {
          first_dests.push_back(d);
          ++s.sources_per_rank[d];
        }
        ++pair_rows[d];
        if (rd.target >= 0) {
          ++s.rows_per_expert[rd.target];
        } else {
          for (int k = 0; k < K; ++k)
            if (row_ids[k] >= 0 && map.rank_of[row_ids[k]] == d) ++s.rows_per_expert[row_ids[k]];
        }
        const std::int32_t* got = row_ids;  // global ids arrive verbatim
        if (id_space(o.model) != IdSpace::global) {
          deliver_row(o.model, map, K, row_ids, row_w, rd, ids.data(), w.data());
          got = ids.data();
        }
        const int nj = plan_row(in.consumer, map, d, K, got, rd.target, rd.slot, first, jobs.data());
        s.performed_per_rank[d] += nj;
        for (int j = 0; j < nj; ++j) ++s.performed_per_expert[jobs[j].expert];
      }
    }
    for (int d = 0; d < R; ++d) {
      s.dispatch_bytes[static_cast<std::size_t>(r) * R + d] = pair_rows[d] * f.send_row;
      s.combine_bytes[static_cast<std::size_t>(d) * R + r] = pair_rows[d] * f.back_row;
    }
  }
  finish_stats(in, s, start);
  return s;
}

RoutingStats routing_stats(const StatsInput& in, const std::vector<SourceRouting>& sources, const Dispatch* dispatched) {
  if (!dispatched)
    if (auto s = routing_stats_counted(in, sources)) return std::move(*s);
  return routing_stats_by_rows(in, sources, dispatched);
}

}  // namespace moesim::sim
