// moesim diff on crafted run/golden files: attribution through the schema, pipeline order,
// structure differences, decoding, streaming and the report.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "diff.hpp"
#include "diff_fixtures.hpp"
#include "error.hpp"

using namespace moesim;
using namespace moesim::test;

namespace {
const diff::DatasetResult& dataset(const diff::Result& r, const std::string& path) {
  for (const auto& d : r.datasets)
    if (d.path == path) return d;
  FAIL("no dataset " << path);
  throw;
}
}  // namespace

TEST_CASE("identical files: no divergence, every dataset compared") {
  RunSpec s;
  make_run(tmp("same_a.h5"), s);
  make_run(tmp("same_b.h5"), s);
  const auto r = diff::run(tmp("same_a.h5"), tmp("same_b.h5"), {});
  CHECK_FALSE(r.different());
  CHECK(r.divergences().empty());
  CHECK(r.datasets.size() == 2 * 9);  // final, expert, combine, recv_x, recv_weights, src_rank, src_token, ids, target
  CHECK(r.per_token.empty());
  CHECK(dataset(r, "/layers/0/ranks/1/final_out").metrics.elements == 32);
}

TEST_CASE("a token-indexed mismatch is attributed to layer, rank, token and column") {
  RunSpec s;
  make_run(tmp("tok_b.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    // rank 1, token 2, column 5 of final_out (H = 8)
    return (leaf == "final_out" && rank == 1 && i == 2 * 8 + 5) ? v + 0.5f : v;
  };
  make_run(tmp("tok_a.h5"), s);
  const auto r = diff::run(tmp("tok_a.h5"), tmp("tok_b.h5"), {});
  CHECK(r.different());
  const auto& d = dataset(r, "/layers/0/ranks/1/final_out");
  CHECK(d.metrics.mismatched == 1);
  CHECK(d.metrics.max_abs == 0.5);
  CHECK(d.first_mismatch_at.layer == 0);
  CHECK(d.first_mismatch_at.rank == 1);
  CHECK(d.first_mismatch_at.token == 2);
  CHECK(d.first_mismatch_at.column == 5);
  CHECK(d.max_abs_at.index == std::vector<std::uint64_t>{2, 5});
  CHECK(d.row_mismatched == std::vector<std::int64_t>{0, 0, 1, 0});
  CHECK(d.row_max_abs[2] == 0.5);
  CHECK(r.per_rank.size() == 1);
  CHECK(r.per_rank.at(1).mismatched == 1);
  REQUIRE(r.per_token.size() == 1);
  CHECK(r.per_token.begin()->first == diff::TokenKey{0, 1, 2});
  const auto div = r.divergences();
  REQUIRE(div.size() == 1);
  CHECK(div[0].stage == diff::Stage::final_);
}

TEST_CASE("a received row is attributed to its source rank and token; slots to experts") {
  RunSpec s;
  make_run(tmp("row_b.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    if (leaf == "recv_x" && rank == 0 && i / 8 == 3) return v + 1.0f;   // row 3 of rank 0: from rank 1 token 3
    if (leaf == "expert_out" && rank == 1 && i == (2 * 2 + 1) * 8) return v - 2.0f;  // token 2 slot 1 column 0
    return v;
  };
  make_run(tmp("row_a.h5"), s);
  make_routing(tmp("row_routing.h5"), s);
  diff::Options o;
  o.routing_trace = tmp("row_routing.h5");
  const auto r = diff::run(tmp("row_a.h5"), tmp("row_b.h5"), o);
  const auto& recv = dataset(r, "/layers/0/ranks/0/dispatch/recv_x");
  CHECK(recv.metrics.mismatched == 8);
  CHECK(recv.first_mismatch_at.row == 3);
  CHECK(recv.first_mismatch_at.src_rank == 1);
  CHECK(recv.first_mismatch_at.src_token == 3);
  CHECK(recv.first_mismatch_at.token == -1);
  const auto& ex = dataset(r, "/layers/0/ranks/1/expert_out");
  CHECK(ex.first_mismatch_at.token == 2);
  CHECK(ex.first_mismatch_at.slot == 1);
  CHECK(ex.first_mismatch_at.expert == (1 + 2 + 1) % 4);  // routing: (rank + token + slot) % E
  CHECK(r.per_expert.size() == 1);
  CHECK(r.per_expert.at(0).mismatched == 1);
  // rank 0 receives the bad row; its source token is rank 1 token 3.
  CHECK(r.per_rank.at(0).mismatched == 8);
  CHECK(r.per_token.count({0, 1, 3}) == 1);
  CHECK(r.per_token.at({0, 1, 3}).mismatched == 8);
  CHECK(r.per_token.at({0, 1, 2}).max_abs == 2);
  const auto worst = r.worst_tokens(1);
  REQUIRE(worst.size() == 1);
  CHECK(worst[0].first == diff::TokenKey{0, 1, 2});
  // Pipeline order: the dispatch divergence is named before the expert one.
  const auto div = r.divergences();
  REQUIRE(div.size() == 2);
  CHECK(div[0].stage == diff::Stage::dispatch);
  CHECK(div[0].path == "/layers/0/ranks/0/dispatch/recv_x");
  CHECK(div[1].stage == diff::Stage::expert);
  CHECK(r.routing_note.find("row_routing.h5") != std::string::npos);
}

TEST_CASE("received-row slots take their expert from recv_topk_ids") {
  RunSpec s;
  make_run(tmp("ids_b.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    return (leaf == "expert_out" && rank == 0 && i == (1 * 2 + 1) * 8 + 4) ? v + 1 : v;
  };
  make_run(tmp("ids_a.h5"), s);
  // Without --trace there are no token routings: the expert is unknown for token,slot data.
  const auto r = diff::run(tmp("ids_a.h5"), tmp("ids_b.h5"), {});
  const auto& ex = dataset(r, "/layers/0/ranks/0/expert_out");
  CHECK(ex.first_mismatch_at.slot == 1);
  CHECK(ex.first_mismatch_at.expert == -1);
  CHECK(ex.first_mismatch_at.column == 4);
  CHECK(r.per_expert.empty());
}

TEST_CASE("received local ids name global experts through the routing trace's config, or none") {
  RunSpec s;
  s.id_space = "local";  // DeepEP normal mode: id - rank * E_local
  make_run(tmp("local_b.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    return leaf == "recv_weights" && rank == 1 && i == 2 * 2 + 1 ? v + 1 : v;  // row 2, slot 1
  };
  make_run(tmp("local_a.h5"), s);
  // Without a config the local id cannot be made global: no expert rather than a wrong one.
  const auto bare = diff::run(tmp("local_a.h5"), tmp("local_b.h5"), {});
  CHECK(dataset(bare, "/layers/0/ranks/1/dispatch/recv_weights").first_mismatch_at.expert == -1);
  CHECK(bare.per_expert.empty());
  make_routing(tmp("local_routing.h5"), s);
  diff::Options o;
  o.routing_trace = tmp("local_routing.h5");
  const auto r = diff::run(tmp("local_a.h5"), tmp("local_b.h5"), o);
  const auto& d = dataset(r, "/layers/0/ranks/1/dispatch/recv_weights");
  // local id (rank*K + slot + row) % E = (2 + 1 + 2) % 4 = 1 on rank 1 with E_local 2: global 3.
  CHECK(d.first_mismatch_at.slot == 1);
  CHECK(d.first_mismatch_at.expert == 3);
  CHECK(r.per_expert.count(3) == 1);
}

TEST_CASE("a routing config with 0 ranks names no expert instead of dividing by zero") {
  RunSpec s;
  s.id_space = "local";
  make_run(tmp("zero_b.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    return leaf == "recv_weights" && rank == 1 && i == 5 ? v + 1 : v;
  };
  make_run(tmp("zero_a.h5"), s);
  s.config_ranks = 0;
  make_routing(tmp("zero_routing.h5"), s);
  diff::Options o;
  o.routing_trace = tmp("zero_routing.h5");
  const auto r = diff::run(tmp("zero_a.h5"), tmp("zero_b.h5"), o);
  CHECK(dataset(r, "/layers/0/ranks/1/dispatch/recv_weights").first_mismatch_at.expert == -1);
}

TEST_CASE("the earliest layer comes first, then the earliest stage") {
  RunSpec s;
  make_run(tmp("order_b.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    return (leaf == "combine_out" || leaf == "final_out") && i == 0 ? v + 1 : v;
  };
  make_run(tmp("order_a.h5"), s);
  const auto r = diff::run(tmp("order_a.h5"), tmp("order_b.h5"), {});
  const auto div = r.divergences();
  REQUIRE(div.size() == 4);
  CHECK(div[0].path == "/layers/0/ranks/0/combine_out");
  CHECK(div[1].path == "/layers/0/ranks/1/combine_out");
  CHECK(div[2].stage == diff::Stage::final_);
  const std::string text = diff::format_text(r, {});
  CHECK(text.find("first divergence: layer 0, stage combine: /layers/0/ranks/0/combine_out: 1 of 32 elements "
                  "mismatched") != std::string::npos);
  CHECK(text.find("\nstages: dispatch ok, expert ok, combine 2/2 differ, final 2/2 differ\n") != std::string::npos);
}

TEST_CASE("objects in one file only are listed; they count only between files of one format") {
  RunSpec run, golden;
  golden.format = "moesim-golden";
  make_run(tmp("st_run.h5"), run);
  make_run(tmp("st_golden.h5"), golden);
  const auto r = diff::run(tmp("st_run.h5"), tmp("st_golden.h5"), {});
  CHECK_FALSE(r.structure_counts);
  CHECK_FALSE(r.different());
  // Topmost missing objects only: the dispatch group, not each of its datasets.
  CHECK(r.only_a == std::vector<std::string>{"/layers/0/ranks/0/combine_out", "/layers/0/ranks/0/dispatch",
                                              "/layers/0/ranks/1/combine_out", "/layers/0/ranks/1/dispatch"});
  CHECK(r.only_b.empty());
  CHECK(r.datasets.size() == 4);
  CHECK(r.attributes.size() == 1);  // the format attribute, a note
  CHECK_FALSE(r.attributes[0].numeric);
  golden.format = "moesim-run";
  golden.ranks = 3;
  make_run(tmp("st_run3.h5"), golden);
  const auto r3 = diff::run(tmp("st_run.h5"), tmp("st_run3.h5"), {});
  CHECK(r3.only_b == std::vector<std::string>{"/layers/0/ranks/2"});
  CHECK(r3.different());
}

TEST_CASE("--exclude skips matching objects and what lies under them") {
  RunSpec s;
  make_run(tmp("excl_b.h5"), s);
  s.edit = [](const std::string& leaf, int, std::size_t, float v) { return leaf == "recv_x" ? v + 1 : v; };
  make_run(tmp("excl_a.h5"), s);
  diff::Options o;
  CHECK(diff::run(tmp("excl_a.h5"), tmp("excl_b.h5"), o).different());
  o.exclude = {"*/dispatch"};
  const auto r = diff::run(tmp("excl_a.h5"), tmp("excl_b.h5"), o);
  CHECK_FALSE(r.different());
  CHECK(r.datasets.size() == 2 * 3);  // final, expert, combine per rank
}

TEST_CASE("incomparable shapes are reported, and refused when named") {
  RunSpec s;
  make_run(tmp("shape_a.h5"), s);
  s.tokens = 5;
  make_run(tmp("shape_b.h5"), s);
  const auto r = diff::run(tmp("shape_a.h5"), tmp("shape_b.h5"), {});
  CHECK(r.different());
  CHECK(r.incomparable.size() == 18);  // 9 datasets per rank
  CHECK(r.incomparable[0].why.find("shape [4,8,2]") == std::string::npos);
  bool found = false;
  for (const auto& i : r.incomparable)
    found |= i.path == "/layers/0/ranks/0/final_out" &&
             i.why == "shape [4,8] in " + tmp("shape_a.h5") + " vs [5,8] in " + tmp("shape_b.h5");
  CHECK(found);
  // total_recv differs too: a numeric attribute difference in the dispatch stage.
  const auto div = r.divergences();
  CHECK(div.front().stage == diff::Stage::dispatch);
  diff::Options o;
  o.objects = {"/layers/0/ranks/0/final_out"};
  CHECK_THROWS_WITH_AS(diff::run(tmp("shape_a.h5"), tmp("shape_b.h5"), o),
                       ("/layers/0/ranks/0/final_out: cannot compare: shape [4,8] in " + tmp("shape_a.h5") +
                        " vs [5,8] in " + tmp("shape_b.h5"))
                           .c_str(),
                       Error);
}

TEST_CASE("bf16 stored as uint16 is decoded through its dtype attribute; --raw compares patterns") {
  RunSpec s;
  s.dtype = DType::bf16;
  make_run(tmp("bf_b.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    // One bf16 step up at 100 + 3 + 2/64 (bf16 spacing at 64..128 is 0.5): 103.5 vs 103.
    return (leaf == "final_out" && rank == 1 && i == 3 * 8 + 2) ? 103.5f : v;
  };
  make_run(tmp("bf_a.h5"), s);
  diff::Options o;
  o.objects = {"/layers/0/ranks/1/final_out"};
  const auto r = diff::run(tmp("bf_a.h5"), tmp("bf_b.h5"), o);
  const auto& d = dataset(r, "/layers/0/ranks/1/final_out");
  CHECK(d.dtype_a == "bfloat16");
  CHECK(d.metrics.max_abs == 0.5);
  CHECK(d.metrics.max_ulp == 1);
  CHECK(d.metrics.mismatched == 0);  // 0.5 <= 1e-5 + 1.6e-2 * 103
  CHECK(d.tolerance.rtol == 1.6e-2);
  o.raw = true;
  const auto raw = diff::run(tmp("bf_a.h5"), tmp("bf_b.h5"), o);
  CHECK(dataset(raw, "/layers/0/ranks/1/final_out").dtype_a == "uint16");
  CHECK(dataset(raw, "/layers/0/ranks/1/final_out").metrics.max_abs == 1);  // adjacent patterns
  CHECK(dataset(raw, "/layers/0/ranks/1/final_out").metrics.mismatched == 1);
}

TEST_CASE("per-dataset tolerance overrides decide pass or fail") {
  RunSpec s;
  make_run(tmp("tol_b.h5"), s);
  s.edit = [](const std::string& leaf, int, std::size_t i, float v) { return leaf == "final_out" ? v * 1.001f : v; };
  make_run(tmp("tol_a.h5"), s);
  diff::Options o;
  CHECK(diff::run(tmp("tol_a.h5"), tmp("tol_b.h5"), o).different());
  o.tolerances.rules.push_back({"*/final_out", {0, 2e-3}});
  const auto r = diff::run(tmp("tol_a.h5"), tmp("tol_b.h5"), o);
  CHECK_FALSE(r.different());
  CHECK(dataset(r, "/layers/0/ranks/0/final_out").tolerance.rtol == 2e-3);
  CHECK(dataset(r, "/layers/0/ranks/0/final_out").metrics.differ > 0);
}

TEST_CASE("results do not depend on the streaming block size") {
  RunSpec s;
  s.tokens = 37;
  s.hidden = 24;
  make_run(tmp("blk_b.h5"), s);
  s.edit = [](const std::string&, int rank, std::size_t i, float v) {
    return i % 7 == 3 ? v + 0.001f * static_cast<float>(i % 11) * (rank + 1) : v;
  };
  make_run(tmp("blk_a.h5"), s);
  diff::Options big, small;
  small.block_elements = 5;  // splits rows, and the [T,K,H] datasets inside a slot
  const auto a = diff::run(tmp("blk_a.h5"), tmp("blk_b.h5"), big);
  const auto b = diff::run(tmp("blk_a.h5"), tmp("blk_b.h5"), small);
  REQUIRE(a.datasets.size() == b.datasets.size());
  for (size_t i = 0; i < a.datasets.size(); ++i) {
    const auto &x = a.datasets[i].metrics, &y = b.datasets[i].metrics;
    CHECK(x.mismatched == y.mismatched);
    CHECK(x.sum_abs == y.sum_abs);  // same order, same bits
    CHECK(x.sum_xy1 == y.sum_xy1);
    CHECK(a.datasets[i].row_max_abs == b.datasets[i].row_max_abs);
    CHECK(a.datasets[i].max_abs_at.index == b.datasets[i].max_abs_at.index);
  }
  CHECK(diff::format_json(a, big) == diff::format_json(b, small));
}

TEST_CASE("the report holds per-token error arrays and tallies") {
  RunSpec s;
  make_run(tmp("rep_b.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    return leaf == "final_out" && rank == 0 && i / 8 == 1 ? v + 0.25f : v;
  };
  make_run(tmp("rep_a.h5"), s);
  diff::Options o;
  const auto r = diff::run(tmp("rep_a.h5"), tmp("rep_b.h5"), o);
  const std::string out = tmp("rep.h5");
  std::filesystem::remove(out);
  diff::write_report(r, o, out);
  const h5::File f = h5::File::open_read(out);
  CHECK(f.attr_string("/", "format") == "moesim-diff-report");
  const std::string g = "/datasets/layers/0/ranks/0/final_out";
  CHECK(f.read<double>(g + "/row_max_abs") == std::vector<double>{0, 0.25, 0, 0});
  CHECK(f.read<std::int64_t>(g + "/row_mismatched") == std::vector<std::int64_t>{0, 8, 0, 0});
  CHECK(f.attr_string(g, "row_axis") == "token");
  CHECK(f.attr_int(g, "mismatched") == 8);
  CHECK(f.read<std::int32_t>("/per_rank/rank") == std::vector<std::int32_t>{0});
  CHECK(f.read<std::int64_t>("/per_token/token") == std::vector<std::int64_t>{1});
  CHECK(f.read<double>("/worst_tokens/max_abs") == std::vector<double>{0.25});
}

TEST_CASE("received rows in another arrival order are matched by their source") {
  RunSpec s;
  make_run(tmp("perm_b.h5"), s);
  s.reverse_rows = true;
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    // Stored row 0 of rank 1 now holds source token 3 (rows reversed): corrupt it.
    return leaf == "recv_x" && rank == 1 && i == 2 ? v + 1 : v;
  };
  make_run(tmp("perm_a.h5"), s);
  const auto r = diff::run(tmp("perm_a.h5"), tmp("perm_b.h5"), {});
  const auto& recv = dataset(r, "/layers/0/ranks/1/dispatch/recv_x");
  CHECK(recv.rows_matched);
  CHECK(recv.metrics.mismatched == 1);
  CHECK(recv.first_mismatch_at.row == 0);
  CHECK(recv.first_mismatch_at.src_rank == 0);
  CHECK(recv.first_mismatch_at.src_token == 3);
  CHECK(recv.first_mismatch_at.column == 2);
  CHECK_FALSE(dataset(r, "/layers/0/ranks/1/dispatch/src_token").failed());
  CHECK_FALSE(dataset(r, "/layers/0/ranks/0/dispatch/recv_topk_ids").failed());
  CHECK(r.failed_datasets() == 1);
  diff::Options stored;
  stored.match_rows = false;
  const auto u = diff::run(tmp("perm_a.h5"), tmp("perm_b.h5"), stored);
  CHECK_FALSE(dataset(u, "/layers/0/ranks/1/dispatch/recv_x").rows_matched);
  CHECK(dataset(u, "/layers/0/ranks/1/dispatch/src_token").failed());
  CHECK(dataset(u, "/layers/0/ranks/1/dispatch/recv_x").metrics.mismatched > 8);
}
