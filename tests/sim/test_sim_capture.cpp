// Capture replay: receive buffers captured from a (simulated) library are checked against every
// dispatch model; the model that produced them is consistent, the others say where not, and
// injected faults (a duplicated row, a dropped row, a corrupted row) are named.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "capture_check.hpp"
#include "sim_fixtures.hpp"
#include "simulate.hpp"
#include "trace_io.hpp"

using namespace moesim;
using namespace moesim::sim;

namespace {

// Writes what `model` delivers into every rank's captured side, as a user's capture would.
Trace captured_trace(DispatchModel model, SrcPosEncoding enc) {
  test::TraceShape shape;
  shape.tokens = {11, 7, 13, 9};
  shape.minus_one_rate = 0.1;
  Trace tr = test::make_trace(shape);
  const ExpertMap map = make_expert_map(tr.config);
  SimOptions o;
  o.dispatch.model = model;
  o.dispatch.encoding = enc;
  const Dispatch d = dispatch(map, shape.top_k, layer_sources(tr, 0, map, o), o.dispatch);
  const int H = shape.hidden, K = shape.top_k;
  for (int r = 0; r < shape.ranks; ++r) {
    const RecvBuffer& b = d.ranks[r];
    Captured& cap = tr.layers[0].ranks[r].captured;
    cap.rows = b.total_recv;
    cap.total_recv = b.total_recv;
    cap.buffer_rows = b.buffer_rows;
    cap.recv_topk_ids = b.ids;
    cap.recv_weights = b.weights;
    cap.src_token_pos = b.src_pos;
    cap.src_pos_encoding = std::string(name(rank_dedup(model) ? enc : SrcPosEncoding::pair));
    cap.recv_x.resize(b.total_recv * H);
    for (std::int64_t i = 0; i < b.total_recv; ++i)
      std::copy_n(&tr.layers[0].ranks[b.src_rank[i]].x[b.src_token[i] * H], H, &cap.recv_x[i * H]);
    (void)K;
  }
  return tr;
}

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

const ModelFinding& finding(const CaptureCheck& c, const std::string& model) {
  for (const auto& m : c.models)
    if (m.model == model) return m;
  throw std::runtime_error("no finding for " + model);
}

}  // namespace

TEST_CASE("a capture is consistent with the model that produced it and not with the others") {
  for (const auto& case_ : {std::pair{DispatchModel::mori, "mori"}, std::pair{DispatchModel::deepep_ht, "deepep-ht"},
                            std::pair{DispatchModel::pairs, "pairs"}}) {
    const DispatchModel model = case_.first;  // no structured binding: clang 14 cannot capture one
    const char* label = case_.second;
    CAPTURE(label);
    const Trace tr = captured_trace(model, SrcPosEncoding::flat);
    const auto checks = check_captures(tr, 0, make_expert_map(tr.config), {});
    REQUIRE(checks.size() == 4);
    for (const auto& c : checks) {
      CAPTURE(c.rank);
      const auto ok = c.consistent_models();
      CHECK(has(ok, label));
      CHECK(c.x_mismatches == 0);
      CHECK(c.undecodable == 0);
      CHECK(c.id_space() == (model == DispatchModel::deepep_ht ? "local" : "global"));
      if (model != DispatchModel::pairs) CHECK_FALSE(has(ok, "pairs"));
      if (model == DispatchModel::pairs) {
        CHECK_FALSE(has(ok, "mori"));
        CHECK(finding(c, "mori").duplicate_rows > 0);  // mori would send one row per rank
      }
    }
  }
}

TEST_CASE("legacy src_token_pos decodes only as legacy") {
  Trace tr = captured_trace(DispatchModel::mori, SrcPosEncoding::legacy);
  const ExpertMap map = make_expert_map(tr.config);
  for (const auto& c : check_captures(tr, 0, map, {})) CHECK(has(c.consistent_models(), "mori"));
  // The same positions declared flat point at the wrong sources.
  for (auto& rank : tr.layers[0].ranks) rank.captured.src_pos_encoding = "flat";
  bool any_bad = false;
  for (const auto& c : check_captures(tr, 0, map, {})) any_bad = any_bad || c.consistent_models().empty();
  CHECK(any_bad);
}

TEST_CASE("an injected duplicate, a dropped row and a corrupted row are each named") {
  Trace tr = captured_trace(DispatchModel::mori, SrcPosEncoding::flat);
  const ExpertMap map = make_expert_map(tr.config);
  const int H = tr.config.hidden, K = tr.config.top_k;
  Captured& c1 = tr.layers[0].ranks[1].captured;
  REQUIRE(c1.total_recv >= 3);
  // Rank 1: row 0 duplicated over row 2 (the row that was at 2 goes missing).
  std::copy_n(&c1.recv_x[0], H, &c1.recv_x[2 * H]);
  std::copy_n(&c1.recv_topk_ids[0], K, &c1.recv_topk_ids[2 * K]);
  std::copy_n(&c1.recv_weights[0], K, &c1.recv_weights[2 * K]);
  c1.src_token_pos[2] = c1.src_token_pos[0];
  // Rank 2: its last row dropped.
  Captured& c2 = tr.layers[0].ranks[2].captured;
  c2.total_recv -= 1;
  // Rank 3: one element of row 1 corrupted.
  Captured& c3 = tr.layers[0].ranks[3].captured;
  c3.recv_x[1 * H + 5] += 1.0f;
  const auto checks = check_captures(tr, 0, map, {});
  const auto& m1 = finding(checks[1], "mori");
  CHECK(m1.duplicate_rows == 1);
  CHECK(m1.missing_rows == 1);
  CHECK(m1.evidence.size() >= 2);
  CHECK(m1.evidence[0].find("row 2: an extra row for source") != std::string::npos);
  CHECK_FALSE(has(checks[1].consistent_models(), "mori"));
  const auto& m2 = finding(checks[2], "mori");
  CHECK(m2.missing_rows == 1);
  CHECK(m2.duplicate_rows == 0);
  CHECK(checks[3].x_mismatches == 1);
  CHECK(checks[3].evidence[0].find("row 1: recv_x differs from its decoded source") != std::string::npos);
  CHECK(checks[3].consistent_models().empty());
  CHECK(has(checks[0].consistent_models(), "mori"));  // untouched rank stays consistent
}

TEST_CASE("moesim run on a trace with captured buffers reports the consistent model") {
  const std::string path = std::string(MOESIM_TEST_TMP) + "/sim_captured_pairs.h5";
  const std::string out = std::string(MOESIM_TEST_TMP) + "/sim_captured_pairs.txt";
  Trace tr = captured_trace(DispatchModel::pairs, SrcPosEncoding::flat);
  write_trace(tr, path);
  const std::string bin = MOESIM_BINARY;
  REQUIRE_FALSE(bin.empty());
  REQUIRE(std::system((bin + " run " + path + " --numerics exact > " + out).c_str()) == 0);
  std::ifstream in(out);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("captured receive buffers, checked against each dispatch model") != std::string::npos);
  CHECK(text.find("rank 2: ") != std::string::npos);
  CHECK(text.find("consistent with: pairs") != std::string::npos);
  CHECK(text.find("not mori: ") != std::string::npos);
}
