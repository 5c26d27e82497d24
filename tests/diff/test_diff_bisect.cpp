// moesim bisect on generated traces with a fault injected in one layer, stage and token: it
// names them, and the minimal trace it writes is valid, a few tokens, and still diverges.
#include <doctest/doctest.h>

#include <filesystem>

#include "bisect.hpp"
#include "diff_fixtures.hpp"
#include "error.hpp"
#include "pairing.hpp"
#include "reference.hpp"
#include "trace_io.hpp"

using namespace moesim;
using namespace moesim::sim;
using namespace moesim::test;

namespace {
const std::string& trace_path() {
  static const std::string path = [] {
    const std::string p = tmp("bisect_trace.h5");
    const Ran r = run_moesim("gen -o " + p +
                             " --seed 7 --layers 3 --tokens 12 --ranks 4 --experts 8 --top-k 2 --hidden 128"
                             " --intermediate 32 --sentinel-rate 0.1");
    REQUIRE(r.code == 0);
    return p;
  }();
  return path;
}

BisectOptions options(const TraceConfig& c) {
  BisectOptions o;
  o.candidate.dispatch.model = DispatchModel::mori;
  o.candidate.consumer.model = default_consumer(DispatchModel::mori);
  o.candidate.combine = default_combine(DispatchModel::mori, c.mori.kernel_type);
  o.candidate.numerics = Numerics::bf16;
  o.reference = o.candidate;  // no tolerances: the rounding bound, as diff's default
  o.work_dir = MOESIM_TEST_TMP;
  return o;
}

std::int64_t tokens(const Trace& t) {
  std::int64_t n = 0;
  for (const auto& l : t.layers)
    for (const auto& r : l.ranks) n += r.num_tokens;
  return n;
}
}  // namespace

TEST_CASE("the correct pairing does not diverge") {
  const Trace t = read_trace(trace_path());
  const BisectResult r = bisect(t, options(t.config));
  CHECK_FALSE(r.first.found);
}

TEST_CASE("an injected fault is named by layer, stage and token, and shrinks to that token") {
  const Trace t = read_trace(trace_path());
  for (const auto stage : {diff::Stage::dispatch, diff::Stage::expert, diff::Stage::combine, diff::Stage::final_}) {
    BisectOptions o = options(t.config);
    o.fault = Fault{1, stage, 2, 7, 0.75};
    const BisectResult r = bisect(t, o);
    INFO("stage " << diff::name(stage));
    REQUIRE(r.first.found);
    CHECK(r.first.layer == 1);
    CHECK(r.first.stage == stage);
    CHECK(r.first.rank == 2);
    CHECK(r.first.token == 7);
    CHECK(r.tokens_before == 48);
    REQUIRE(r.kept_tokens.size() == 1);
    CHECK(r.kept_tokens[0] == std::pair<int, std::int64_t>{2, 7});
    CHECK(tokens(r.minimal) == 1);
    CHECK(r.minimal.layers.size() == 2);  // layer 0 kept empty, so layer 1's weights stay its own
    CHECK(r.minimal_divergence.found);
    CHECK(r.minimal_divergence.stage == stage);
    CHECK(r.ranks_after == 1);  // a fault on one token needs no other rank
    CHECK(r.minimal.config.num_ranks == 1);
    CHECK(r.experts_after == 2);  // top-2 needs two experts
    CHECK(r.minimal.config.num_experts == 2);
    REQUIRE(r.minimal_fault);
    CHECK(r.minimal_fault->rank == 0);
    CHECK(r.minimal_fault->token == 0);
  }
}

TEST_CASE("the minimal trace is written valid and reproduces the divergence") {
  const Trace t = read_trace(trace_path());
  BisectOptions o = options(t.config);
  o.fault = Fault{2, diff::Stage::expert, 0, 3, 1.0};
  const BisectResult r = bisect(t, o);
  REQUIRE(r.first.found);
  const std::string path = tmp("bisect_min.h5");
  write_trace(r.minimal, path);
  const Trace back = read_trace(path);
  CHECK(back.layers.size() == 3);
  CHECK(tokens(back) == 1);
  o.fault = r.minimal_fault;
  const BisectResult again = bisect(back, o);
  CHECK(again.first.found);
  CHECK(again.first.layer == 2);
  CHECK(again.first.stage == diff::Stage::expert);
  CHECK(again.first.rank == 0);
  CHECK(again.first.token == 0);
}

TEST_CASE("a bug model diverges at the expert stage and shrinks to a few tokens") {
  const Trace t = read_trace(trace_path());
  BisectOptions o = options(t.config);
  o.candidate.consumer.model = ConsumerModel::all_k;  // the seed's flow: every slot computed on every rank
  const BisectResult r = bisect(t, o);
  REQUIRE(r.first.found);
  CHECK(r.first.layer == 0);
  CHECK(r.first.stage == diff::Stage::expert);
  CHECK(r.kept_tokens.size() <= 3);
  CHECK(r.minimal_divergence.found);
  CHECK(r.minimal_divergence.stage == diff::Stage::expert);
  CHECK(r.slots_after <= r.slots_before);
  CHECK(r.ranks_after > 1);  // on one rank every id is local: all-k is right there
  CHECK(r.experts_after < r.experts_before);
  // Renumbered experts keep their weights (stored): the minimal trace diverges by the same amount.
  const std::string path = tmp("bisect_allk_min.h5");
  write_trace(r.minimal, path);
  const BisectResult again = bisect(read_trace(path), o);
  REQUIRE(again.first.found);
  CHECK(again.first.stage == diff::Stage::expert);
  CHECK(again.first.max_abs == r.minimal_divergence.max_abs);
}

TEST_CASE("moesim bisect: exit 1 with a minimal trace and its command, 0 when nothing diverges") {
  const std::string out = tmp("bisect_cli_min.h5");
  std::filesystem::remove(out);
  const Ran same = run_moesim("bisect " + trace_path() + " -o " + out);
  CHECK(same.code == 0);
  CHECK(same.out.find("no divergence") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
  const Ran r = run_moesim("bisect " + trace_path() + " -o " + out + " --inject 1,combine,3,4");
  CHECK(r.code == 1);
  CHECK(r.out.find("first divergence: layer 1, stage combine (/layers/1/ranks/3/combine_out") != std::string::npos);
  CHECK(r.out.find("worst token: rank 3 token 4") != std::string::npos);
  CHECK(r.out.find("minimal trace: 1 of 48 tokens (rank 3 token 4)") != std::string::npos);
  CHECK(r.out.find("1 of 4 ranks") != std::string::npos);
  const auto at = r.out.find("reproduce: moesim ");
  REQUIRE(at != std::string::npos);
  const std::string cmd = r.out.substr(at + std::string("reproduce: moesim ").size());
  const h5::File f = h5::File::open_read(out);
  CHECK(f.attr_string("/", "command") + "\n" == "moesim " + cmd);
  CHECK(run_moesim("validate " + out).code == 0);
  const Ran again = run_moesim(cmd.substr(0, cmd.size() - 1));
  CHECK(again.code == 1);
  CHECK(again.out.find("first divergence: layer 1, stage combine") != std::string::npos);
  const Ran bad = run_moesim("bisect " + trace_path() + " -o " + out + " --inject 1,mixing,3,4");
  CHECK(bad.code == 2);
  CHECK(bad.err == "moesim bisect: --inject: unknown stage 'mixing' (dispatch, expert, combine or final)\n");
}

TEST_CASE("a recorded candidate: a trace's captured outputs are localized against the reference model") {
  Trace t = read_trace(trace_path());
  ReferenceOptions ro;
  ro.numerics = Numerics::bf16;
  const auto outputs = run_reference(t, ro);
  for (std::size_t l = 0; l < t.layers.size(); ++l)
    for (std::size_t r = 0; r < t.layers[l].ranks.size(); ++r) {
      const Values& v = outputs[l].ranks[r].final_out;
      std::vector<float> out(v.size());
      for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
      if (l == 2 && r == 1)  // token 5 of rank 1 in layer 2 came back wrong
        for (std::size_t h = 0; h < 128; ++h) out[5 * 128 + h] = round_bf16(out[5 * 128 + h] + 2.0f);
      t.layers[l].ranks[r].captured.final_out = out;
    }
  const std::string path = tmp("bisect_captured.h5");
  write_trace(t, path);
  const Trace captured = read_trace(path);
  const RecordedDivergence r = locate_recorded(captured, path, Numerics::bf16, {}, MOESIM_TEST_TMP);
  REQUIRE(r.first.found);
  CHECK(r.first.layer == 2);
  CHECK(r.first.stage == diff::Stage::final_);
  CHECK(r.first.dataset == "/layers/2/ranks/1/final_out");
  CHECK(r.first.rank == 1);
  CHECK(r.first.token == 5);
  REQUIRE(r.worst.size() == 1);
  CHECK(std::get<1>(r.worst[0]) == 5);
  const Ran cli = run_moesim("bisect " + path + " --candidate " + path);
  CHECK(cli.code == 1);
  CHECK(cli.out.find("first divergence: layer 2, stage final (/layers/2/ranks/1/final_out: 128 of ") !=
        std::string::npos);
}

TEST_CASE("a recorded run file that matches the reference does not diverge") {
  const std::string run = tmp("bisect_run.h5");
  REQUIRE(run_moesim("run " + trace_path() + " -o " + run + " --numerics bf16").code == 0);
  const Ran ok = run_moesim("bisect " + trace_path() + " --candidate " + run);
  CHECK(ok.code == 0);
  CHECK(ok.out.find("no divergence: within the bf16 rounding bound (worst element used ") != std::string::npos);
  const std::string bad = tmp("bisect_run_allk.h5");
  REQUIRE(run_moesim("run " + trace_path() + " -o " + bad + " --numerics bf16 --consumer all-k").code == 1);
  const Ran wrong = run_moesim("bisect " + trace_path() + " --candidate " + bad);
  CHECK(wrong.code == 1);
  CHECK(wrong.out.find("first divergence: layer 0, stage ") != std::string::npos);
}

TEST_CASE("one final_out element of a correct bf16 run changed by 42% is a divergence for bisect and diff alike") {
  const std::string run = tmp("bisect_run_edited.h5"), gold = tmp("bisect_run_edited_golden.h5");
  REQUIRE(run_moesim("run " + trace_path() + " -o " + run + " --numerics bf16").code == 0);
  REQUIRE(run_moesim("golden " + trace_path() + " -o " + gold + " --numerics bf16").code == 0);
  // Layer 1, rank 2, token 3, column 7 scaled by 1.42 (rounded to bf16 as the file stores it).
  REQUIRE(shell("/usr/bin/python3 -c \"import h5py, numpy as np; f = h5py.File('" + run +
                "', 'a'); d = f['layers/1/ranks/2/final_out']; a = d[...]; "
                "u = np.uint32; v = (a[3:4, 7].astype(u) << u(16)).view(np.float32) * np.float32(1.42); "
                "a[3, 7] = ((v.view(u) + u(0x8000)) >> u(16))[0]; d[...] = a\"")
              .code == 0);
  const Ran b = run_moesim("bisect " + trace_path() + " --candidate " + run);
  CHECK(b.code == 1);
  CHECK(b.out.find("first divergence: layer 1, stage final (/layers/1/ranks/2/final_out: 1 of ") != std::string::npos);
  CHECK(b.out.find("exceeds the bf16 rounding bound by ") != std::string::npos);
  CHECK(b.out.find("at layer 1, rank 2, token 3, column 7") != std::string::npos);
  const Ran d = run_moesim("diff " + run + " " + gold);
  CHECK(d.code == 1);
  CHECK(d.out.find("verdict: exceeds the bf16 rounding bound by ") != std::string::npos);
  CHECK(d.out.find("at layer 1, rank 2, token 3, column 7 (/layers/1/ranks/2/final_out)") != std::string::npos);
}

TEST_CASE("old MORI's -1 to rank 0 shrinks to one token with a -1 slot, named at dispatch") {
  const Trace t = read_trace(trace_path());
  BisectOptions o = options(t.config);
  o.candidate.dispatch.negative = NegativeIds::rank0;
  const BisectResult r = bisect(t, o);
  REQUIRE(r.first.found);
  CHECK(r.first.stage == diff::Stage::dispatch);
  REQUIRE(r.kept_tokens.size() == 1);
  const auto [rank, token] = r.kept_tokens[0];
  const auto& ids = t.layers[static_cast<std::size_t>(r.first.layer)].ranks[static_cast<std::size_t>(rank)].topk_ids;
  const bool has_sentinel = ids[static_cast<std::size_t>(token) * 2] < 0 || ids[static_cast<std::size_t>(token) * 2 + 1] < 0;
  CHECK(has_sentinel);
  CHECK(r.slots_after == 0);  // the -1 slot alone reproduces it
  CHECK(r.minimal_divergence.stage == diff::Stage::dispatch);
}

TEST_CASE("bisect --candidate with an unknown numerics attribute names the file and attribute") {
  const std::string gold = tmp("bisect_bad_numerics.h5");
  REQUIRE(run_moesim("golden " + trace_path() + " -o " + gold).code == 0);
  REQUIRE(shell("/usr/bin/python3 -c \"import h5py; h5py.File('" + gold + "', 'a').attrs['numerics'] = 'fp4'\"").code ==
          0);
  const Ran r = run_moesim("bisect " + trace_path() + " --candidate " + gold);
  CHECK(r.code == 2);
  CHECK(r.err == "moesim bisect: " + gold +
                     ": /: attribute 'numerics': unknown numerics 'fp4' (expected exact, fp32, bf16, fp8 or hf-bf16)\n");
}
