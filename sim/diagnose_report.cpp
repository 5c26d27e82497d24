// The readable and JSON reports of moesim diagnose.
#include <cmath>
#include <sstream>

#include "diagnose.hpp"

namespace moesim::sim {

namespace {

std::string g(double v) {
  std::ostringstream s;
  s.precision(4);
  s << v;
  return s.str();
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\', o += ch;
    else if (ch == '\n') o += "\\n";
    else if (static_cast<unsigned char>(ch) < 0x20) o += ' ';
    else o += ch;
  }
  return o + "\"";
}

std::string json_num(double v) { return std::isfinite(v) ? g(v) : "null"; }

std::string obs_text(const Evaluation& e, int o) {
  const Tally& t = e.obs[o];
  std::string s = obs_name(o);
  if (obs_numeric(o))
    s += " (" + (e.by_bound && t.bounded ? "worst element used " + g(t.worst_ratio) + " of the rounding bound, " : std::string()) +
         "relative L2 " + g(t.error(true)) + ", calc_diff " + g(t.calc_diff()) + ")";
  else
    s += " (" + g(t.bad) + " of " + g(t.total) + " " + (o == obs_counts ? "ranks" : "rows") + " differ)";
  return s;
}

bool same_rank(const Evaluation& a, const Evaluation& b) {
  return a.tested && b.tested && a.unexplained == b.unexplained && std::round(a.score * 1e9) == std::round(b.score * 1e9);
}

const char* verdict_key(Verdict v) {
  switch (v) {
    case Verdict::consistent: return "consistent";
    case Verdict::explained: return "explained";
    case Verdict::disagrees: return "disagrees";
    case Verdict::buffers_consistent: return "buffers-consistent";
    case Verdict::undecided: return "undecided";
  }
  return "undecided";
}

std::string unexplained_list(const Evaluation& e, double tol) {
  std::string no;
  for (int o = 0; o < kNumObs; ++o)
    if (e.obs[o].present && !e.explains(o, tol)) no += (no.empty() ? "" : ", ") + std::string(obs_name(o));
  return no;
}

void print_verdict(std::ostream& out, const Diagnosis& d) {
  const Verdict v = d.verdict();
  const Evaluation& best = d.ranked.front();
  switch (v) {
    case Verdict::consistent:
      out << "verdict: consistent with the correct integration (the buffers and the consumer's outputs)\n";
      break;
    case Verdict::buffers_consistent:
      out << "verdict: the buffers are consistent with the correct integration; the consumer was not tested (no outputs "
             "captured)\n";
      break;
    case Verdict::explained: {
      out << "verdict: " << d.hypothesis(best).key << " explains the capture: " << d.hypothesis(best).title << "\n";
      std::string ties;
      for (std::size_t i = 1; i < d.ranked.size(); ++i)
        if (same_rank(d.ranked[i], best)) ties += (ties.empty() ? "" : ", ") + d.hypothesis(d.ranked[i]).key;
      if (!ties.empty()) out << "  as well as " << ties << ": the captured evidence does not tell them apart\n";
      if (!d.answer.empty()) out << "  " << d.answer << "\n";
      break;
    }
    case Verdict::disagrees: {
      const Evaluation* correct = nullptr;
      const Evaluation* bug = nullptr;
      for (const auto& e : d.ranked) {
        if (d.hypothesis(e).correct) correct = &e;
        else if (!bug && e.tested) bug = &e;
      }
      out << "verdict: the capture disagrees with the correct integration (" << correct->unexplained
          << " observations unexplained: " << unexplained_list(*correct, d.tolerance)
          << ") and no model of the catalog explains all of it";
      if (bug) out << "; the nearest bug model, " << d.hypothesis(*bug).key << ", leaves " << bug->unexplained << " unexplained";
      out << "\n";
      break;
    }
    case Verdict::undecided:
      out << "verdict: undecided: "
          << (!d.sources_known ? "the trace holds no source routing, so no model could be simulated"
                               : "no observation could be compared with any model")
          << "; the receive-side deductions above are what the rows say on their own\n";
      break;
  }
  if (!d.next.empty()) {
    out << "to decide, capture next:\n";
    for (const auto& n : d.next) out << "  - " << n << "\n";
  }
}

}  // namespace

void print_diagnosis(std::ostream& out, const Trace& trace, const Diagnosis& d, int top) {
  const TraceConfig& c = trace.config;
  out << trace.path << ": " << c.num_ranks << " ranks, " << c.num_experts << " experts, top-" << c.top_k << ", hidden "
      << c.hidden << ", library " << (c.library.empty() ? "unset" : c.library) << "\n";
  out << "captured: " << (d.has_rows ? "receive rows" : "no receive rows") << ", "
      << (d.has_outputs ? "outputs" : "no outputs (only hypotheses that change the buffers are ranked)")
      << (d.sources_known ? "" : ", no source routing") << "\n";

  bool any = false;
  for (const auto& rd : d.readings) any = any || !rd.sentences.empty();
  if (any) {
    out << "what the receive rows say on their own:\n";
    for (const auto& rd : d.readings)
      for (const auto& sentence : rd.sentences)
        out << "  " << (d.layers.size() > 1 ? "layer " + std::to_string(rd.layer) + " " : "") << sentence << "\n";
  }

  out << "structural checks:\n";
  for (std::size_t l = 0; l < d.checks.size(); ++l) {
    out << " layer " << trace.layers[d.layers[l]].index << "\n";
    for (const auto& ck : d.checks[l]) {
      print_capture_check(out, ck);
      for (const auto& b : d.buffers)
        if (b.layer == trace.layers[d.layers[l]].index && b.rank == ck.rank) {
          if (b.duplicate_positions || b.identical_rows)
            out << "    " << b.duplicate_positions << " rows repeat a src_token_pos, " << b.identical_rows
                << " rows share their recv_x with a row of another source\n";
          if (b.full && b.overflow > 0)
            out << "    total_recv fills the whole buffer of " << ck.buffer_rows << " rows, and the routing sends "
                << b.overflow << " rows more: they were dropped (silent overflow, mori issue 356)\n";
          else if (b.full && b.overflow == 0)
            out << "    total_recv fills the whole buffer exactly; the routing sends no more rows: nothing overflowed\n";
        }
    }
  }

  const std::string score = "score: the sum over observations of the fraction of rows (or ranks) that differ, or of the "
                            "relative L2, each capped at 1";
  if (!d.bound_label.empty())
    out << "hypotheses, best first (a numeric observation is explained when every element is within "
        << d.bound_label << "; stale rows under relative L2 " << g(d.tolerance) << "; " << score << "):\n";
  else
    out << "hypotheses, best first (a numeric observation is explained under relative L2 " << g(d.tolerance) << "; "
        << score << "):\n";
  int shown = 0;
  for (std::size_t i = 0; i < d.ranked.size(); ++i) {
    const Evaluation& e = d.ranked[i];
    const Hypothesis& h = d.hypothesis(e);
    if (!e.tested) continue;
    int present = 0;
    for (int o = 0; o < kNumObs; ++o) present += e.obs[o].present;
    out << "  " << (i + 1) << ". " << h.key << ": explains " << (present - e.unexplained) << " of " << present
        << " observations, score " << g(e.score) << (i > 0 && same_rank(e, d.ranked[0]) ? " (ties the first)" : "")
        << "\n     " << h.title << "\n";
    if (!e.note.empty()) out << "     " << e.note << "\n";
    if (shown++ >= top) {
      const std::string no = unexplained_list(e, d.tolerance);
      if (!no.empty()) out << "     does not explain: " << no << "\n";
      continue;
    }
    std::string yes;
    for (int o = 0; o < kNumObs; ++o) {
      if (!e.obs[o].present) continue;
      if (e.explains(o, d.tolerance)) yes += (yes.empty() ? "" : ", ") + std::string(obs_name(o));
    }
    if (!yes.empty()) out << "     explains: " << yes << "\n";
    for (int o = 0; o < kNumObs; ++o)
      if (e.obs[o].present && !e.explains(o, d.tolerance))
        out << "     does not explain: " << obs_text(e, o) << (e.obs[o].first.empty() ? "" : "; " + e.obs[o].first) << "\n";
  }
  bool all_untested = true;
  for (const auto& e : d.ranked) all_untested = all_untested && !e.tested;
  if (all_untested && !d.ranked.empty()) {
    out << "  none tested: " << d.ranked.front().note << "\n";
  } else {
    for (const auto& e : d.ranked)
      if (!e.tested) out << "  not tested: " << d.hypothesis(e).key << ": " << e.note << "\n";
  }
  if (d.products_computed > 0)
    out << "expert products (token, expert): " << d.products_computed << " computed, " << d.products_reused
        << " served again to other hypotheses\n";
  print_verdict(out, d);
}

void print_diagnosis_json(std::ostream& out, const Trace& trace, const Diagnosis& d) {
  out << "{\"trace\": " << json_str(trace.path) << ", \"verdict\": " << json_str(verdict_key(d.verdict()))
      << ", \"exit_code\": " << exit_code(d.verdict()) << ", \"consistent\": " << (d.consistent() ? "true" : "false")
      << ", \"best\": " << json_str(d.hypothesis(d.ranked.front()).key) << ", \"tolerance\": " << json_num(d.tolerance)
      << ", \"bound\": " << json_str(d.bound_label)
      << ", \"has_outputs\": " << (d.has_outputs ? "true" : "false")
      << ", \"has_source_routing\": " << (d.sources_known ? "true" : "false") << ",\n \"capture_next\": [";
  for (std::size_t i = 0; i < d.next.size(); ++i) out << (i ? ", " : "") << json_str(d.next[i]);
  out << "], \"answer\": " << json_str(d.answer) << ",\n \"receive_side\": [";
  for (std::size_t i = 0; i < d.readings.size(); ++i) {
    const ReceiveReading& rd = d.readings[i];
    out << (i ? ",\n  " : "\n  ") << "{\"layer\": " << rd.layer << ", \"rank\": " << rd.rank << ", \"rows\": " << rd.rows
        << ", \"whole_buffer\": " << (rd.whole_buffer ? "true" : "false") << ", \"stale_from\": " << rd.stale_from
        << ", \"matched_end\": " << rd.matched_end << ", \"id_space\": " << json_str(rd.id_space)
        << ", \"identical_groups\": " << rd.identical_groups << ", \"groups_beyond_per_expert_copies\": " << rd.over_pair_groups
        << ", \"per_expert_copies_ruled_out\": " << (rd.pairs_ruled_out ? "true" : "false") << ", \"models\": [";
    for (std::size_t m = 0; m < rd.models.size(); ++m) out << (m ? ", " : "") << json_str(rd.models[m]);
    out << "], \"deductions\": [";
    for (std::size_t m = 0; m < rd.sentences.size(); ++m) out << (m ? ", " : "") << json_str(rd.sentences[m]);
    out << "]}";
  }
  out << "],\n \"structural\": [";
  bool first = true;
  for (std::size_t l = 0; l < d.checks.size(); ++l)
    for (const auto& ck : d.checks[l]) {
      const BufferFinding* bf = nullptr;
      for (const auto& b : d.buffers)
        if (b.layer == trace.layers[d.layers[l]].index && b.rank == ck.rank) bf = &b;
      out << (first ? "\n  " : ",\n  ") << "{\"layer\": " << trace.layers[d.layers[l]].index << ", \"rank\": " << ck.rank
          << ", \"rows\": " << ck.rows << ", \"total_recv\": " << ck.total_recv << ", \"buffer_rows\": " << ck.buffer_rows
          << ", \"undecodable\": " << ck.undecodable << ", \"x_mismatches\": " << ck.x_mismatches
          << ", \"duplicate_positions\": " << (bf ? bf->duplicate_positions : 0)
          << ", \"identical_rows\": " << (bf ? bf->identical_rows : 0)
          << ", \"full\": " << (bf && bf->full ? "true" : "false") << ", \"overflow\": " << (bf ? bf->overflow : -1)
          << ", \"id_space\": " << json_str(ck.id_space()) << ", \"compared\": " << (ck.not_compared.empty() ? "true" : "false")
          << ", \"consistent_models\": [";
      const auto ok = ck.consistent_models();
      for (std::size_t i = 0; i < ok.size(); ++i) out << (i ? ", " : "") << json_str(ok[i]);
      out << "]}";
      first = false;
    }
  out << "],\n \"hypotheses\": [";
  for (std::size_t i = 0; i < d.ranked.size(); ++i) {
    const Evaluation& e = d.ranked[i];
    const Hypothesis& h = d.hypothesis(e);
    out << (i ? ",\n  " : "\n  ") << "{\"position\": " << (i + 1) << ", \"key\": " << json_str(h.key)
        << ", \"title\": " << json_str(h.title) << ", \"tested\": " << (e.tested ? "true" : "false")
        << ", \"note\": " << json_str(e.note) << ", \"unexplained\": " << e.unexplained << ", \"score\": " << json_num(e.score)
        << ", \"observations\": {";
    bool f2 = true;
    for (int o = 0; o < kNumObs; ++o) {
      const Tally& t = e.obs[o];
      if (!t.present) continue;
      out << (f2 ? "" : ", ") << json_str(obs_name(o)) << ": {\"explained\": " << (e.explains(o, d.tolerance) ? "true" : "false")
          << (obs_numeric(o) ? ", \"relative_l2\": " : ", \"fraction_differing\": ") << json_num(t.error(obs_numeric(o)));
      if (obs_numeric(o)) out << ", \"calc_diff\": " << json_num(t.calc_diff());
      if (obs_numeric(o) && t.bounded) out << ", \"bound_used\": " << json_num(t.worst_ratio);
      out << ", \"evidence\": " << json_str(t.first) << "}";
      f2 = false;
    }
    out << "}}";
  }
  out << "]}\n";
}

}  // namespace moesim::sim
