#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace moesim::sim {

namespace {
std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
std::string bytes(double b) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return fmt(u ? "%.1f " : "%.0f ", b) + unit[u];
}
}  // namespace

void print_pairing(std::ostream& out, const SimOptions& o, const PairingVerdict& v) {
  out << "pairing: dispatch " << name(o.dispatch.model) << ", consumer " << name(o.consumer.model) << ", combine "
      << name(o.combine);
  if (o.combine == CombineModel::rank_sum && o.dispatch.model == DispatchModel::deepep_ht)
    out << " (DeepEP " << name(o.deepep_version) << ": " << name(rank_order(o.dispatch.model, o.deepep_version))
        << " order)";
  out << (v.correct ? "  (a correct integration)\n" : "  (FLAGGED: not a correct integration)\n");
  for (const auto& r : v.reasons) out << "  why: " << r << "\n";
  if (!v.correct) out << "  correct: " << v.correct_pairings << "\n";
}

void print_stats(std::ostream& out, const RoutingStats& s, bool per_rank) {
  const int R = s.num_ranks;
  std::int64_t off = 0, total_d = 0, total_c = 0, max_pair = 0;
  for (int a = 0; a < R; ++a)
    for (int b = 0; b < R; ++b) {
      const auto v = s.dispatch_bytes[static_cast<std::size_t>(a) * R + b];
      total_d += v;
      total_c += s.combine_bytes[static_cast<std::size_t>(b) * R + a];
      if (a != b) off += v;
      max_pair = std::max(max_pair, v);
    }
  const auto rows = s.rows_per_rank;
  out << "  tokens " << s.tokens << ", (token, expert) pairs " << s.pairs << "\n"
      << "  rows received " << s.total_rows() << " (per rank min " << *std::min_element(rows.begin(), rows.end())
      << ", max " << *std::max_element(rows.begin(), rows.end()) << "), distinct source tokens "
      << s.total_sources() << ", duplication factor " << fmt("%.3f", s.duplication()) << "\n"
      << "  expert computations " << s.total_performed() << " performed / " << s.total_needed()
      << " needed: waste factor " << fmt("%.3f", s.waste()) << " ("
      << fmt("%.2f", s.total_sources() ? static_cast<double>(s.total_performed()) / static_cast<double>(s.total_sources()) : 0.0)
      << " per distinct source token, the seed's measure)\n"
      << "  load imbalance (max/mean): rows per rank " << fmt("%.3f", RoutingStats::imbalance(s.rows_per_rank))
      << ", computations per rank " << fmt("%.3f", RoutingStats::imbalance(s.performed_per_rank))
      << ", pairs per expert " << fmt("%.3f", RoutingStats::imbalance(s.needed_per_expert)) << "\n"
      << "  bytes: dispatch " << bytes(static_cast<double>(total_d)) << " (" << bytes(static_cast<double>(off))
      << " off-rank, busiest rank pair " << bytes(static_cast<double>(max_pair)) << "), combine "
      << bytes(static_cast<double>(total_c)) << "\n";
  std::int64_t stale = 0;
  for (auto v : s.stale_rows_per_rank) stale += v;
  if (s.total_overflow() > 0)
    out << "  OVERFLOW: " << s.total_overflow() << " rows arrived past receive capacity and were dropped\n";
  else
    out << "  overflow: none\n";
  if (stale > 0) out << "  stale rows read past total_recv: " << stale << "\n";
  if (per_rank) {
    out << "   rank       rows    sources     buffer     needed  performed   overflow      stale\n";
    for (int r = 0; r < R; ++r) {
      char line[160];
      std::snprintf(line, sizeof line, "  %5d %10lld %10lld %10lld %10lld %10lld %10lld %10lld\n", r,
                    static_cast<long long>(s.rows_per_rank[r]), static_cast<long long>(s.sources_per_rank[r]),
                    static_cast<long long>(s.buffer_rows_per_rank[r]), static_cast<long long>(s.needed_per_rank[r]),
                    static_cast<long long>(s.performed_per_rank[r]), static_cast<long long>(s.overflow_per_rank[r]),
                    static_cast<long long>(s.stale_rows_per_rank[r]));
      out << line;
    }
  }
}

}  // namespace moesim::sim
