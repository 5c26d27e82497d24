// moesim diagnose on trace files: exit codes (0 consistent, 1 a bug explains it better, 2 error),
// the text report's sections, --json, partial evidence, and the input left untouched.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "diagnose/diagnose_fixtures.hpp"
#include "trace_io.hpp"

using namespace moesim;
using namespace moesim::sim;
using namespace moesim::test;

namespace {

struct Run {
  int code;
  std::string out;
};

Run moesim_cli(const std::string& args) {
  const std::string cmd = "'" + std::string(MOESIM_BINARY) + "' " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string tmp(const std::string& name) {
  std::filesystem::create_directories(MOESIM_TEST_TMP);
  return std::string(MOESIM_TEST_TMP) + "/diagnose_" + name;
}

std::string bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string write_capture(const std::string& name, const SimOptions& o, bool outputs = true) {
  Trace tr = make_trace(diagnose_shape());
  tr.config.library = "mori";
  capture_run(tr, o, outputs);
  const std::string path = tmp(name + ".h5");
  write_trace(tr, path);
  return path;
}

}  // namespace

TEST_CASE("a correct capture: exit 0, structural checks first, verdict consistent") {
  const std::string path = write_capture("correct", options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  const std::string before = bytes_of(path);
  const Run r = moesim_cli("diagnose '" + path + "' --threads 2");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(r.out.find("structural checks:") < r.out.find("hypotheses, best first"));
  CHECK(r.out.find("consistent with: mori") != std::string::npos);
  CHECK(r.out.find("  1. correct: explains 7 of 7 observations") != std::string::npos);
  CHECK(r.out.find("verdict: consistent with the correct integration") != std::string::npos);
  CHECK(bytes_of(path) == before);
}

TEST_CASE("weights applied twice: exit 1, the model first with its evidence, --json") {
  const std::string path = write_capture("twice", options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::weighted));
  const Run r = moesim_cli("diagnose '" + path + "'");
  INFO(r.out);
  CHECK(r.code == 1);
  CHECK(r.out.find("  1. weights-twice: explains 7 of 7") != std::string::npos);
  CHECK(r.out.find("verdict: weights-twice explains the capture") != std::string::npos);
  // The correct integration's entry says which observations it does not explain.
  const auto at = r.out.find(". correct:");
  REQUIRE(at != std::string::npos);
  CHECK(r.out.find("does not explain: final_out (relative L2", at) != std::string::npos);

  const Run j = moesim_cli("diagnose '" + path + "' --json");
  INFO(j.out);
  CHECK(j.code == 1);
  CHECK(j.out.find("\"consistent\": false") != std::string::npos);
  CHECK(j.out.find("\"best\": \"weights-twice\"") != std::string::npos);
  CHECK(j.out.find("{\"position\": 1, \"key\": \"weights-twice\"") != std::string::npos);
  CHECK(j.out.find("\"calc_diff\": ") != std::string::npos);

  // --only: the correct integration and the named models, nothing else.
  const Run o = moesim_cli("diagnose '" + path + "' --only weights-never,weights-twice");
  INFO(o.out);
  CHECK(o.code == 1);
  CHECK(o.out.find("  1. weights-twice:") != std::string::npos);
  CHECK(o.out.find("  3. weights-never:") != std::string::npos);
  CHECK(o.out.find("all-k") == std::string::npos);
  const Run bad = moesim_cli("diagnose '" + path + "' --only weights-thrice");
  CHECK(bad.code == 2);
  CHECK(bad.out.find("unknown hypothesis 'weights-thrice' (expected correct, weights-twice") != std::string::npos);
}

TEST_CASE("buffers only: structural hypotheses ranked, the rest listed as untested") {
  SimOptions o = options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum);
  o.dispatch.negative = NegativeIds::rank0;
  const std::string path = write_capture("rank0_buffers", o, false);
  const Run r = moesim_cli("diagnose '" + path + "'");
  INFO(r.out);
  CHECK(r.code == 1);
  CHECK(r.out.find("no outputs (only hypotheses that change the buffers are ranked)") != std::string::npos);
  CHECK(r.out.find("  1. minus-one-to-rank0:") != std::string::npos);
  CHECK(r.out.find("not tested: weights-twice: predicts the correct integration's buffers: needs captured outputs") !=
        std::string::npos);
}

TEST_CASE("errors: exit 2 with one line") {
  Trace tr = make_trace(diagnose_shape());
  const std::string bare = tmp("bare.h5");
  write_trace(tr, bare);
  const Run none = moesim_cli("diagnose '" + bare + "'");
  CHECK(none.code == 2);
  CHECK(none.out.find("nothing captured") != std::string::npos);
  CHECK(none.out.find(bare) != std::string::npos);
  const Run missing = moesim_cli("diagnose '" + tmp("absent.h5") + "'");
  CHECK(missing.code == 2);
  const Run layer = moesim_cli("diagnose '" + write_capture("layer", options(DispatchModel::mori, ConsumerModel::aiter_mask,
                                                                                  CombineModel::rank_sum)) + "' --layer 3");
  CHECK(layer.code == 2);
  CHECK(layer.out.find("layer 3 out of range") != std::string::npos);
  const Run only = moesim_cli("diagnose '" + bare + "' --only nonsense");
  CHECK(only.code == 2);
  const Run help = moesim_cli("diagnose --help");
  CHECK(help.code == 0);
  CHECK(help.out.find("minus-one-to-rank0") != std::string::npos);
}
