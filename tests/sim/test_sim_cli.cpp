// `moesim run` end to end: the README's main job, exit codes (0 matches or nothing compared, 1
// disagrees, 2 bad input), the run file's layout, and bad input giving one line, exit code 2
// and no output file.
#include <doctest/doctest.h>
#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "h5.hpp"

namespace {

const std::string kBin = MOESIM_BINARY;
const std::string kTmp = MOESIM_TEST_TMP;
const std::string kDefault = std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/default.h5";
const std::string kSeed = std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/seed-ep8.h5";

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Result run(const std::string& args) {
  // Per process and call: ctest runs test cases side by side as separate processes.
  static int calls = 0;
  const std::string id = std::to_string(::getpid()) + "_" + std::to_string(calls++);
  const std::string o = kTmp + "/sim_cli" + id + ".out", e = kTmp + "/sim_cli" + id + ".err";
  const int st = std::system((kBin + " run " + args + " >" + o + " 2>" + e).c_str());
  Result r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(o), slurp(e)};
  std::remove(o.c_str());
  std::remove(e.c_str());
  return r;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("moesim run TRACE alone: the correct default pairing, a summary, nothing written") {
  REQUIRE_FALSE(kBin.empty());
  const Result r = run(kDefault);
  CHECK(r.code == 0);
  CHECK(contains(r.out, "pairing: dispatch mori, consumer aiter-mask, combine rank-sum  (a correct integration)"));
  CHECK(contains(r.out, "waste factor 1.000"));
  CHECK(contains(r.out, ": matches: within the bf16 rounding bound (worst element used "));
  CHECK(contains(r.out, "\nresult: matches the reference\n"));
  CHECK_FALSE(contains(r.out, "wrote"));
}

TEST_CASE("the seed's all-k flow is flagged, over-computes K times and is wrong: exit 1") {
  const Result r = run(kSeed + " --dispatch pairs --consumer all-k --combine rank-sum");
  CHECK(r.code == 1);
  CHECK(contains(r.out, "FLAGGED"));
  CHECK(contains(r.out, "why: all-k computes every id"));
  CHECK(contains(r.out, "waste factor 8.000"));
  CHECK(contains(r.out, "WRONG on 512 of 512 tokens: exceeds the bf16 rounding bound by "));
  CHECK(contains(r.out, "\nresult: DISAGREES with the reference\n"));
}

TEST_CASE("exit codes: 1 whenever the result disagrees, 0 when it agrees or nothing is compared") {
  // Weights applied twice (a weighted combine after AITER's weighted partials), in every mode.
  for (const char* n : {"exact", "fp32", "bf16", "fp8"}) {
    CAPTURE(n);
    CHECK(run(kDefault + " --numerics " + std::string(n)).code == 0);
    const Result twice = run(kDefault + " --combine weighted --numerics " + std::string(n));
    CHECK(twice.code == 1);
    CHECK(contains(twice.out, "FLAGGED"));
    CHECK(contains(twice.out, "result: DISAGREES with the reference"));
  }
  // A flagged pairing that happens to compute the right numbers is judged by its numbers.
  CHECK(run(kDefault + " --consumer dedup-filter").code == 0);
  // Nothing compared: exit 0, and no verdict printed.
  const Result none = run(kSeed + " --consumer all-k --no-reference");
  CHECK(none.code == 0);
  CHECK_FALSE(contains(none.out, "result:"));
  CHECK(run(kSeed + " --consumer all-k --routing-only").code == 0);
  // Writing the run file does not change the verdict.
  const std::string out = kTmp + "/sim_cli_exit_" + std::to_string(::getpid()) + ".h5";
  CHECK(run(kSeed + " --consumer all-k -o " + out).code == 1);
  CHECK(std::filesystem::exists(out));
  std::filesystem::remove(out);
}

TEST_CASE("--help of every command lists its exit codes; run, diff, bisect and diagnose name the rounding bound") {
  for (const char* cmd : {"run", "diff", "bisect", "diagnose"}) {
    CAPTURE(cmd);
    const std::string o = kTmp + "/help_" + std::to_string(::getpid()) + ".out";
    const int st = std::system((kBin + " " + cmd + " --help >" + o + " 2>&1").c_str());
    const std::string out = slurp(o);
    std::remove(o.c_str());
    CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
    CHECK(contains(out, "Exit 0: "));
    CHECK(contains(out, "; 1: "));
    CHECK(contains(out, "2: "));
    CHECK(contains(out, "rounding bound of reference/NUMERICS.md"));
  }
  for (const char* cmd : {"gen", "golden", "validate", "info", "bench"}) {
    CAPTURE(cmd);
    const std::string o = kTmp + "/help_" + std::to_string(::getpid()) + ".out";
    REQUIRE(std::system((kBin + " " + cmd + " --help >" + o + " 2>&1").c_str()) == 0);
    CHECK(contains(slurp(o), "Exit 0: done; 2: bad input"));
    std::remove(o.c_str());
  }
}

TEST_CASE("the README's main job exits 0, says what matches means, shows both flows and ends with a summary") {
  const std::string o = kTmp + "/main_job_" + std::to_string(::getpid()) + ".out";
  const int st = std::system((std::string(MOESIM_SOURCE_DIR) + "/tools/main-job.sh " + kBin + " >" + o + " 2>&1").c_str());
  const std::string out = slurp(o);
  std::remove(o.c_str());
  CHECK((WIFEXITED(st) && WEXITSTATUS(st) == 0));
  CHECK(out.rfind("\"matches\" means: every element of the layer's final output is within the rounding bound", 0) == 0);
  CHECK(contains(out, "result: matches the reference"));
  CHECK(contains(out, "result: DISAGREES with the reference"));
  const std::string last = out.substr(out.rfind('\n', out.size() - 2) + 1);
  CHECK(last ==
        "summary: the correct integration matches the reference (exit 0); the seed's all-k flow does not (exit 1), as "
        "expected\n");
}

TEST_CASE("-o writes a run file in the golden layout plus every stage") {
  const std::string out = kTmp + "/sim_cli_run.h5";
  std::filesystem::remove(out);
  const Result r = run(kDefault + " --dispatch deepep-ll --numerics exact -o " + out);
  REQUIRE(r.code == 0);
  const auto f = moesim::h5::File::open_read(out);
  CHECK(f.attr_string("/", "format") == "moesim-run");
  CHECK(f.attr_string("/", "numerics") == "exact");
  CHECK(f.attr_string("/", "dispatch") == "deepep-ll");
  CHECK(f.attr_string("/", "pairing") == "correct");
  CHECK(f.attr_string("/", "trace_hash").size() == 16);
  const std::string rp = "/layers/1/ranks/2";
  for (const char* ds : {"/final_out", "/expert_out", "/combine_out", "/expert_rows", "/dispatch/recv_x",
                         "/dispatch/recv_topk_ids", "/dispatch/src_token_pos", "/dispatch/target_expert"})
    CHECK_MESSAGE(f.exists(rp + ds), ds);
  CHECK(f.attr_string(rp + "/dispatch/recv_x", "stage") == "dispatch");
  CHECK(f.attr_string(rp + "/expert_rows", "stage") == "expert");
  CHECK(f.attr_string(rp + "/combine_out", "stage") == "combine");
  CHECK(f.attr_string(rp + "/final_out", "stage") == "final");
  const auto total = f.attr_int(rp + "/dispatch", "total_recv");
  CHECK(f.info(rp + "/dispatch/recv_x").dims[0] == static_cast<std::uint64_t>(total));
  CHECK(f.attr_double("/stats/layers/0", "waste_factor") == 1.0);
  CHECK(f.info("/stats/layers/0/dispatch_bytes").dims == std::vector<std::uint64_t>{4, 4});
  // DeepEP LL's own returns: packed_recv_count per local expert, layout_range [E_local, R] whose
  // counts add up to it, src_info the source token of each row.
  const auto E_local = f.info(rp + "/dispatch/packed_recv_count").dims[0];
  CHECK(f.info(rp + "/dispatch/layout_range").dims == std::vector<std::uint64_t>{E_local, 4});
  const auto count = f.read<std::int32_t>(rp + "/dispatch/packed_recv_count");
  const auto range = f.read<std::int64_t>(rp + "/dispatch/layout_range");
  const auto src_rank = f.read<std::int32_t>(rp + "/dispatch/src_rank");
  std::int64_t base = 0;
  for (std::uint64_t e = 0; e < E_local; ++e) {
    std::int64_t sum = 0;
    for (int s = 0; s < 4; ++s) {
      const std::int64_t begin = range[e * 4 + s] >> 32, n = range[e * 4 + s] & 0xffffffffLL;
      sum += n;
      for (std::int64_t i = begin; i < begin + n; ++i) CHECK(src_rank[base + i] == s);
    }
    CHECK(sum == count[e]);
    base += count[e];
  }
  CHECK(base == total);
  CHECK(f.read<std::int32_t>(rp + "/dispatch/src_info") == f.read<std::int32_t>(rp + "/dispatch/src_token"));
  CHECK_FALSE(f.exists(rp + "/combine_weights"));  // MORI's combine only
}

TEST_CASE("--deepep-version picks DeepEP's combine order, printed and recorded in the run file") {
  const std::string out = kTmp + "/sim_cli_deepep.h5";
  std::filesystem::remove(out);
  Result r = run(kDefault + " --dispatch deepep-ht --deepep-version v2 -o " + out);
  REQUIRE(r.code == 0);
  CHECK(contains(r.out, "combine rank-sum (DeepEP v2: last-slot order)  (a correct integration)"));
  const auto f = moesim::h5::File::open_read(out);
  CHECK(f.attr_string("/", "deepep_version") == "v2");
  CHECK(f.attr_string("/", "rank_sum_order") == "last-slot");
  r = run(kDefault + " --dispatch deepep-ht");
  CHECK(contains(r.out, "(DeepEP v1: ascending-rank order)"));
  r = run(kDefault + " --deepep-version v3");
  CHECK(r.code == 2);
  CHECK(contains(r.err, "unknown deepep version 'v3' (expected v1, v2)"));
}

TEST_CASE("--consumer identity runs the library's own combine check; --combine-quant is MORI's, recorded") {
  Result r = run(kDefault + " --consumer identity");
  CHECK(r.code == 0);
  CHECK(contains(r.out, "identity experts: combine_out vs x * unique ranks: calc_diff "));
  CHECK(contains(r.out, "MORI's allclose(atol = rtol = 1e-2) on every token: passes"));
  CHECK(contains(r.out, "\nresult: identity experts pass the library's combine check\n"));
  r = run(kDefault + " --consumer identity --dispatch deepep-ll --combine weighted");
  CHECK(r.code == 0);
  CHECK(contains(r.out, "x * sum of weights"));
  const std::string out = kTmp + "/sim_cli_quant.h5";
  std::filesystem::remove(out);
  r = run(kDefault + " --combine-quant fp8_blockwise --combine-scale-dim 4 -o " + out);
  CHECK(r.code == 1);  // the quantization error is past the bf16 rounding bound of the reference
  const auto f = moesim::h5::File::open_read(out);
  CHECK(f.attr_string("/", "combine_quant") == "fp8_blockwise");
  CHECK(f.attr_string("/", "combine_fp8_format") == "float8_e4m3fn");
  CHECK(f.attr_int("/", "combine_scale_dim") == 4);
  r = run(kDefault + " --combine-quant fp8_blockwise --numerics exact -o " + out + "2");
  CHECK(r.code == 2);
  CHECK(contains(r.err, "combine quantization fp8_blockwise quantizes bf16 rows: it needs numerics bf16 or fp8"));
  CHECK_FALSE(contains(r.out, "layer 0"));  // refused before any work
  r = run(kDefault + " --dispatch deepep-ht --combine-quant fp8_direct_cast");
  CHECK(r.code == 2);
  CHECK(contains(r.err, "needs dispatch mori and combine rank-sum"));
  r = run(kDefault + " --combine-quant fp4_blockwise");
  CHECK(r.code == 2);
  CHECK(contains(r.err, "unknown combine quantization 'fp4_blockwise'"));
}

TEST_CASE("bad input: one line, exit code 2, no output file") {
  const std::string out = kTmp + "/sim_cli_bad.h5";
  std::filesystem::remove(out);
  Result r = run(kDefault + " --dispatch nope -o " + out);
  CHECK(r.code == 2);
  CHECK(contains(r.err, "unknown dispatch model 'nope'"));
  r = run(kDefault + " --max-total-recv 5 -o " + out);
  CHECK(r.code == 2);
  CHECK(contains(r.err, "receive buffer overflow"));
  r = run(kTmp + "/no-such-trace.h5 -o " + out);
  CHECK(r.code == 2);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_FALSE(std::filesystem::exists(out));
  // Physical ids past the logical range, read as logical: file, dataset and index named.
  const std::string eplb = kTmp + "/sim_cli_eplb.h5";
  REQUIRE(std::system((kBin + " gen -o " + eplb + " --placement eplb --experts 16 --logical 8 --seed 4 >/dev/null").c_str()) == 0);
  r = run(eplb + " --ids logical -o " + out);
  CHECK(r.code == 2);
  CHECK(contains(r.err, eplb + ": /layers/0/ranks/0/topk_ids: index [0, 1]: logical id 10 out of range"));
  CHECK_FALSE(std::filesystem::exists(out));
  // The silent drop of old MORI runs, says so, and the dropped rows make the result wrong.
  r = run(kDefault + " --max-total-recv 50 --overflow drop");
  CHECK(r.code == 1);
  CHECK(contains(r.out, "OVERFLOW:"));
}

TEST_CASE("--routing-only prints statistics and pairs per second") {
  const Result r = run(kSeed + " --routing-only");
  CHECK(r.code == 0);
  CHECK(contains(r.out, "pairs/s"));
  CHECK(contains(r.out, "duplication factor 1.000"));
  CHECK_FALSE(contains(r.out, "final output"));
}

TEST_CASE("--backend: an unknown one is a usage error; gpu without a usable GPU is one line and nothing written") {
  const std::string out = kTmp + "/sim_cli_backend_" + std::to_string(::getpid()) + ".h5";
  std::filesystem::remove(out);
  Result r = run(kDefault + " --backend tpu -o " + out);
  CHECK(r.code == 2);
  CHECK(contains(r.err, "--backend is cpu, gpu or gpu-fast, not 'tpu'"));
  CHECK_FALSE(std::filesystem::exists(out));
  r = run(kDefault + " --backend gpu -o " + out);
  if (r.code == 0) {  // a machine with a GPU: the file says where the FFNs ran (tests/gpu check the bits)
    const auto f = moesim::h5::File::open_read(out);
    CHECK(f.attr_string("/", "backend") == "gpu");
  } else {
    CHECK(r.code == 2);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK((contains(r.err, "built without a GPU backend") || contains(r.err, "gpu: device 0 not present")));
    CHECK_FALSE(std::filesystem::exists(out));
  }
  std::filesystem::remove(out);
}
