// The moesim diff command: exit codes 0 same, 1 different, 2 error (as h5diff), one-line
// errors, JSON and report outputs, and nothing written when it fails.
#include <doctest/doctest.h>

#include <filesystem>

#include "diff_fixtures.hpp"

using namespace moesim;
using namespace moesim::test;

namespace {
void pair(const std::string& stem) {
  RunSpec s;
  make_run(tmp(stem + "_b.h5"), s);
  make_run(tmp(stem + "_same.h5"), s);
  s.edit = [](const std::string& leaf, int rank, std::size_t i, float v) {
    return leaf == "recv_x" && rank == 1 && i == 9 ? v + 3 : v;
  };
  make_run(tmp(stem + "_a.h5"), s);
}
}  // namespace

TEST_CASE("exit codes: 0 same, 1 different, 2 error") {
  pair("cli");
  const Ran same = run_moesim("diff " + tmp("cli_same.h5") + " " + tmp("cli_b.h5"));
  CHECK(same.code == 0);
  CHECK(same.out.find("no divergence") != std::string::npos);
  const Ran differ = run_moesim("diff " + tmp("cli_a.h5") + " " + tmp("cli_b.h5"));
  CHECK(differ.code == 1);
  CHECK(differ.out.find("first divergence: layer 0, stage dispatch: /layers/0/ranks/1/dispatch/recv_x") !=
        std::string::npos);
  CHECK(differ.out.find("row 1 (from rank 0 token 1) column 1") != std::string::npos);
  const Ran quiet = run_moesim("diff -q " + tmp("cli_a.h5") + " " + tmp("cli_b.h5"));
  CHECK(quiet.code == 1);
  CHECK(quiet.out.empty());
  const Ran missing = run_moesim("diff " + tmp("cli_a.h5") + " " + tmp("nope.h5"));
  CHECK(missing.code == 2);
  CHECK(missing.err == "moesim diff: " + tmp("nope.h5") + ": cannot open: no such file\n");
  const Ran both = run_moesim("diff -d 1 -p 1 " + tmp("cli_a.h5") + " " + tmp("cli_b.h5"));
  CHECK(both.code == 2);
  CHECK(both.err.find("-d and -p are mutually exclusive") != std::string::npos);
  const Ran absent = run_moesim("diff " + tmp("cli_a.h5") + " " + tmp("cli_b.h5") + " /layers/9");
  CHECK(absent.code == 2);
  CHECK(absent.err.find("/layers/9: in neither") != std::string::npos);
}

TEST_CASE("-d and --tol turn a difference into a pass") {
  pair("clitol");
  CHECK(run_moesim("diff -d 3.5 " + tmp("clitol_a.h5") + " " + tmp("clitol_b.h5")).code == 0);
  CHECK(run_moesim("diff -d 2.5 " + tmp("clitol_a.h5") + " " + tmp("clitol_b.h5")).code == 1);
  CHECK(run_moesim("diff --tol '*/recv_x=4,0' " + tmp("clitol_a.h5") + " " + tmp("clitol_b.h5")).code == 0);
  const Ran bad = run_moesim("diff --tol '*/recv_x=4' " + tmp("clitol_a.h5") + " " + tmp("clitol_b.h5"));
  CHECK(bad.code == 2);
  CHECK(bad.err == "moesim diff: --tol */recv_x=4: expected PATTERN=ATOL,RTOL\n");
}

TEST_CASE("--json names the divergence and its source token") {
  pair("clijson");
  const Ran r = run_moesim("diff --json " + tmp("clijson_a.h5") + " " + tmp("clijson_b.h5"));
  CHECK(r.code == 1);
  CHECK(r.out.rfind("{\"file_a\":", 0) == 0);
  CHECK(r.out.find("\"different\":true") != std::string::npos);
  CHECK(r.out.find("\"divergences\":[{\"path\":\"/layers/0/ranks/1/dispatch/recv_x\",\"layer\":0,\"stage\":"
                   "\"dispatch\"") != std::string::npos);
  CHECK(r.out.find("\"worst_tokens\":[{\"layer\":0,\"rank\":0,\"token\":1,\"mismatched\":1,\"max_abs\":3") !=
        std::string::npos);
}

TEST_CASE("--report writes the file only when diff succeeds") {
  pair("clirep");
  const std::string out = tmp("clirep_report.h5");
  std::filesystem::remove(out);
  CHECK(run_moesim("diff -q --report " + out + " " + tmp("clirep_a.h5") + " " + tmp("clirep_b.h5")).code == 1);
  CHECK(std::filesystem::exists(out));
  std::filesystem::remove(out);
  const Ran bad = run_moesim("diff -q --report " + out + " " + tmp("clirep_a.h5") + " " + tmp("absent.h5"));
  CHECK(bad.code == 2);
  CHECK_FALSE(std::filesystem::exists(out));
  for (const auto& e : std::filesystem::directory_iterator(MOESIM_TEST_TMP))
    CHECK(e.path().filename().string().find("clirep_report.h5.tmp") == std::string::npos);
}

TEST_CASE("bad input: one line naming the file and dataset, exit 2") {
  RunSpec s;
  make_run(tmp("clibad_b.h5"), s);
  {
    h5::File f = h5::File::create(tmp("clibad_a.h5"));
    std::vector<std::uint16_t> bits(4 * 8, 0x3f80);
    f.write(rank_path(0, 0) + "/final_out", {4, 8}, bits.data(), "bfloat17");
    f.close();
  }
  const Ran r = run_moesim("diff " + tmp("clibad_a.h5") + " " + tmp("clibad_b.h5"));
  CHECK(r.code == 2);
  CHECK(r.err == "moesim diff: " + tmp("clibad_a.h5") + ": /layers/0/ranks/0/final_out: unknown dtype attribute 'bfloat17'\n");
  {
    h5::File f = h5::File::create(tmp("clibad_c.h5"));
    std::vector<std::uint8_t> codes(4 * 8, 0x38);
    f.write(rank_path(0, 0) + "/final_out", {4, 8}, codes.data(), "bfloat16");
    f.close();
  }
  const Ran c = run_moesim("diff " + tmp("clibad_c.h5") + " " + tmp("clibad_b.h5"));
  CHECK(c.code == 2);
  CHECK(c.err == "moesim diff: " + tmp("clibad_c.h5") +
                     ": /layers/0/ranks/0/final_out: dtype attribute 'bfloat16' does not match its stored integers\n");
  std::ofstream(tmp("clibad_text.h5")) << "not hdf5\n";
  const Ran t = run_moesim("diff " + tmp("clibad_text.h5") + " " + tmp("clibad_b.h5"));
  CHECK(t.code == 2);
  CHECK(t.err == "moesim diff: " + tmp("clibad_text.h5") + ": cannot open: not an HDF5 file\n");
}

TEST_CASE("golden and run files name their trace: slots get experts without --trace, unless the trace changed") {
  const std::string t = tmp("auto_trace.h5"), g = tmp("auto_golden.h5"), r = tmp("auto_run.h5");
  REQUIRE(run_moesim("gen -o " + t + " --seed 3 --tokens 8 --ranks 2 --experts 4 --top-k 2 --hidden 128").code == 0);
  REQUIRE(run_moesim("golden " + t + " -o " + g + " --numerics bf16").code == 0);
  REQUIRE(run_moesim("run " + t + " -o " + r + " --numerics bf16").code == 0);
  const Ran text = run_moesim("diff " + r + " " + g);
  CHECK(text.out.find("experts from " + t + "\n") != std::string::npos);
  // A regenerated trace with other routing no longer matches the recorded hash: not used.
  REQUIRE(run_moesim("gen -o " + t + " --seed 4 --tokens 8 --ranks 2 --experts 4 --top-k 2 --hidden 128").code == 0);
  const Ran stale = run_moesim("diff " + r + " " + g);
  CHECK(stale.out.find("experts from") == std::string::npos);
}

TEST_CASE("golden against a run diverging only in final: the note points to a run-against-run diff") {
  const std::string t = tmp("note_trace.h5"), g = tmp("note_golden.h5"), bad = tmp("note_bad.h5"),
                    ok = tmp("note_ok.h5");
  REQUIRE(run_moesim("gen -o " + t + " --seed 5 --tokens 8 --ranks 4 --experts 16 --top-k 4 --hidden 128").code == 0);
  REQUIRE(run_moesim("golden " + t + " -o " + g + " --numerics bf16").code == 0);
  REQUIRE(run_moesim("run " + t + " -o " + bad + " --consumer all-k").code == 1);  // its result is wrong
  REQUIRE(run_moesim("run " + t + " -o " + ok).code == 0);
  const std::string note = "note: a golden file has no per-row expert or combine stages";
  const Ran golden_vs_bad = run_moesim("diff " + g + " " + bad);
  CHECK(golden_vs_bad.code == 1);
  CHECK(golden_vs_bad.out.find("stage final") != std::string::npos);
  CHECK(golden_vs_bad.out.find(note) != std::string::npos);
  // Two runs have every stage: the first diverging one is named and no note is needed.
  const Ran ok_vs_bad = run_moesim("diff " + ok + " " + bad);
  CHECK(ok_vs_bad.code == 1);
  CHECK(ok_vs_bad.out.find("first divergence: layer 0, stage expert") != std::string::npos);
  CHECK(ok_vs_bad.out.find(note) == std::string::npos);
}

TEST_CASE("default verdict: a correct run agrees with the golden of every mode; explicit tolerances keep torch's") {
  const std::string t = tmp("bound_trace.h5"), run = tmp("bound_run_fp8.h5");
  REQUIRE(run_moesim("gen -o " + t + " --seed 9 --tokens 8 --ranks 4 --experts 16 --top-k 4 --hidden 128").code == 0);
  REQUIRE(run_moesim("run " + t + " -o " + run + " --numerics fp8").code == 0);
  for (const char* n : {"exact", "fp32", "bf16", "fp8"}) {
    CAPTURE(n);
    const std::string g = tmp(std::string("bound_golden_") + n + ".h5");
    REQUIRE(run_moesim("golden " + t + " -o " + g + " --numerics " + n).code == 0);
    const Ran d = run_moesim("diff " + run + " " + g);
    CHECK(d.code == 0);
    CHECK(d.out.find("verdict: within the fp8 rounding bound (worst element used ") != std::string::npos);
    const Ran v = run_moesim("diff -v " + run + " " + g);
    CHECK(v.out.find("/layers/0/ranks/1/final_out  bfloat16") != std::string::npos);
    CHECK(v.out.find(", rounding bound\n") != std::string::npos);
    const Ran j = run_moesim("diff --json " + run + " " + g);
    CHECK(j.out.find("\"bound\":\"the fp8 rounding bound\",\"verdict\":\"within the fp8 rounding bound") != std::string::npos);
  }
  // An explicit criterion is today's: torch.testing's atol + rtol, or h5diff's -d, with no verdict line.
  const Ran strict = run_moesim("diff " + run + " " + tmp("bound_golden_exact.h5") + " --atol 1e-5 --rtol 1e-5");
  CHECK(strict.code == 1);
  CHECK(strict.out.find("verdict:") == std::string::npos);
  CHECK(strict.out.find("atol 1e-05 rtol 1e-05") != std::string::npos);
  CHECK(run_moesim("diff -d 1e-6 " + run + " " + tmp("bound_golden_exact.h5")).code == 1);
  // Without the trace the bound cannot be computed: said so, torch.testing's defaults judge.
  const std::string alone = tmp("bound_alone");
  std::filesystem::create_directories(alone);
  std::filesystem::copy_file(run, alone + "/run.h5", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(tmp("bound_golden_fp8.h5"), alone + "/golden.h5", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(t, t + ".moved");
  const Ran lost = run_moesim("diff " + alone + "/run.h5 " + alone + "/golden.h5");
  std::filesystem::rename(t + ".moved", t);
  CHECK(lost.out.find("note: the rounding bound needs the trace (its router weights and configuration): pass --trace") !=
        std::string::npos);
  CHECK(lost.out.find("verdict:") == std::string::npos);
  const Ran given = run_moesim("diff " + alone + "/run.h5 " + alone + "/golden.h5 --trace " + t);
  CHECK(given.code == 0);
  CHECK(given.out.find("verdict: within the fp8 rounding bound") != std::string::npos);
}
