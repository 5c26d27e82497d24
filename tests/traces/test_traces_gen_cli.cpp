// `moesim gen` and `moesim validate` as a user runs them: same arguments, same bytes; the
// command line recorded; bad options give one line and exit 2 with nothing written.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "test_files.hpp"
#include "trace_io.hpp"
#include "traces/cli_run.hpp"

using namespace moesim;
using moesim::test::bytes_of;

namespace {
using test::CliRun;
CliRun run(const std::string& dir, const std::string& args) { return test::run_moesim(args, dir); }

const std::string kTmp = std::string(MOESIM_TEST_TMP) + "/gen_cli";
}  // namespace

TEST_CASE("moesim gen: same arguments in two folders give the same bytes and record the command") {
  const std::string args = "gen -o t.h5 --routing zipf --zipf 1.5 --sentinel-rate 0.1 --tokens 8 --tokens-max 20";
  const CliRun a = run(kTmp + "/a", args), b = run(kTmp + "/b", args);
  REQUIRE(a.code == 0);
  REQUIRE(b.code == 0);
  CHECK(a.output.rfind("wrote t.h5: 4 ranks, 16 experts, top-4, 1 layer(s), ", 0) == 0);
  CHECK(bytes_of(kTmp + "/a/t.h5") == bytes_of(kTmp + "/b/t.h5"));
  const Trace t = read_trace(kTmp + "/a/t.h5");
  CHECK(t.command == "moesim gen -o t.h5 --routing zipf --zipf 1.5 --sentinel-rate 0.1 --tokens 8 --tokens-max 20");
  const CliRun c = run(kTmp + "/c", "gen -o t.h5 --routing zipf --zipf 1.5 --sentinel-rate 0.1 --tokens 8 --tokens-max 20 --seed 9");
  REQUIRE(c.code == 0);
  CHECK(read_trace(kTmp + "/c/t.h5").layers[0].ranks[0].topk_ids != t.layers[0].ranks[0].topk_ids);
}

TEST_CASE("moesim gen: arguments that need quoting are recorded quoted") {
  const CliRun a = run(kTmp + "/q", "gen -o 'my trace.h5' --x-dist normal");
  REQUIRE(a.code == 0);
  CHECK(read_trace(kTmp + "/q/my trace.h5").command == "moesim gen -o 'my trace.h5' --x-dist normal");
}

TEST_CASE("moesim gen with no other option writes the small default trace") {
  const CliRun a = run(kTmp + "/d", "gen -o d.h5");
  REQUIRE(a.code == 0);
  const CliRun v = run(kTmp + "/d", "validate d.h5");
  CHECK(v.code == 0);
  CHECK(v.output == "ok\n");
  CHECK(std::filesystem::file_size(kTmp + "/d/d.h5") < 200u * 1024);
}

TEST_CASE("moesim gen: bad options give one line, exit 2 and no file") {
  std::filesystem::remove(kTmp + "/e/bad.h5");
  CliRun r = run(kTmp + "/e", "gen -o bad.h5 --experts 10");
  CHECK(r.code == 2);
  CHECK(r.output == "moesim gen: --experts: 10 is not a multiple of --ranks 4\n");
  r = run(kTmp + "/e", "gen -o bad.h5 --routing random");
  CHECK(r.code == 2);
  CHECK(r.output ==
        "moesim gen: unknown routing 'random' (expected uniform, zipf, grouped, hot, all_to_one, round_robin, spread)\n");
  r = run(kTmp + "/e", "gen -o bad.h5 --weights maybe");
  CHECK(r.code == 2);
  CHECK(r.output == "moesim gen: --weights must be 'stored' or 'seed', got 'maybe' (moesim gen --help)\n");
  r = run(kTmp + "/e", "gen --seed 3");
  CHECK(r.code == 2);
  CHECK(r.output.find("output") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(kTmp + "/e/bad.h5"));
  r = run(kTmp + "/e", "gen -o no/such/dir/t.h5");
  CHECK(r.code == 2);
  CHECK(r.output == "moesim gen: no/such/dir/t.h5: cannot write: folder no/such/dir does not exist\n");
}

TEST_CASE("--help on gen and validate") {
  CliRun r = run(kTmp, "gen --help");
  CHECK(r.code == 0);
  CHECK(r.output.rfind("usage: moesim gen -o FILE [options]", 0) == 0);
  CHECK(r.output.find("--routing") != std::string::npos);
  r = run(kTmp, "validate --help");
  CHECK(r.code == 0);
  CHECK(r.output.rfind("usage: moesim validate TRACE", 0) == 0);
}

TEST_CASE("moesim info reports token counts, -1 slots and the recorded command") {
  const CliRun g = run(kTmp + "/i", "gen -o i.h5 --sentinel-rate 0.3 --tokens 5 --tokens-max 9 --routing all_to_one");
  REQUIRE(g.code == 0);
  const Trace t = read_trace(kTmp + "/i/i.h5");
  std::int64_t slots = 0, neg = 0, tmin = 1 << 30, tmax = 0;
  for (const auto& r : t.layers[0].ranks) {
    tmin = std::min(tmin, r.num_tokens);
    tmax = std::max(tmax, r.num_tokens);
    for (auto id : r.topk_ids) slots += 1, neg += id < 0;
  }
  REQUIRE(neg > 0);
  const CliRun i = run(kTmp + "/i", "info i.h5");
  CHECK(i.code == 0);
  CAPTURE(i.output);
  CHECK(i.output.find("  tokens per rank " + std::to_string(tmin) + ".." + std::to_string(tmax) + "; " +
                      std::to_string(slots) + " slots, " + std::to_string(neg) + " of them -1\n") != std::string::npos);
  // all_to_one: rank 0 carries every routed slot, 4 times the mean of 4 ranks.
  CHECK(i.output.find(", rank 4.00\n") != std::string::npos);
  CHECK(i.output.find("  made by: moesim gen -o i.h5 --sentinel-rate 0.3") != std::string::npos);
}

TEST_CASE("moesim info shows the range of experts per rank under an uneven explicit map") {
  const std::string dir = kTmp + "/uneven";
  REQUIRE(run(dir, "gen -o even.h5 --ranks 4 --experts 16 --placement explicit").code == 0);
  CHECK(run(dir, "info even.h5").output.find("(4 per rank, placement explicit)") != std::string::npos);
  // Move expert 0 to the rank of expert 1 unless it is already there: one rank holds 3, another 5.
  Trace t = read_trace(dir + "/even.h5");
  auto& to_rank = t.config.placement.expert_to_rank;
  const int from = to_rank[0];
  int e = 1;
  while (to_rank[e] == from) ++e;
  to_rank[0] = to_rank[e];
  write_trace(t, dir + "/uneven.h5");
  const CliRun i = run(dir, "info uneven.h5");
  CHECK(i.code == 0);
  CAPTURE(i.output);
  CHECK(i.output.find("(3 to 5 per rank, placement explicit)") != std::string::npos);
}
