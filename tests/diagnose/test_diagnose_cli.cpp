// moesim diagnose on trace files: exit codes (0 consistent, 1 a bug explains it better, 2 error),
// the text report's sections, --json, partial evidence, and the input left untouched.
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "diagnose/diagnose_fixtures.hpp"
#include "traces/cli_run.hpp"
#include "test_files.hpp"
#include "trace_io.hpp"

using namespace moesim;
using namespace moesim::sim;
using namespace moesim::test;

namespace {


std::string write_capture(const std::string& name, const SimOptions& o, bool outputs = true) {
  Trace tr = make_trace(diagnose_shape());
  tr.config.library = "mori";
  capture_run(tr, o, outputs);
  const std::string path = tmp("diagnose_" + name + ".h5");
  write_trace(tr, path);
  return path;
}

}  // namespace

TEST_CASE("a correct capture: exit 0, structural checks first, verdict consistent") {
  const std::string path = write_capture("correct", options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  const std::string before = bytes_of(path);
  const CliRun r = run_moesim("diagnose '" + path + "' --threads 2");
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("structural checks:") < r.output.find("hypotheses, best first"));
  CHECK(r.output.find("consistent with: mori") != std::string::npos);
  CHECK(r.output.find("  1. correct: explains 7 of 7 observations") != std::string::npos);
  CHECK(r.output.find("verdict: consistent with the correct integration") != std::string::npos);
  CHECK(bytes_of(path) == before);
}

TEST_CASE("weights applied twice: exit 1, the model first with its evidence, --json") {
  const std::string path = write_capture("twice", options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::weighted));
  const CliRun r = run_moesim("diagnose '" + path + "'");
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK(r.output.find("  1. weights-twice: explains 7 of 7") != std::string::npos);
  CHECK(r.output.find("verdict: weights-twice explains the capture") != std::string::npos);
  // The correct integration's entry says which observations it does not explain.
  const auto at = r.output.find(". correct:");
  REQUIRE(at != std::string::npos);
  CHECK(r.output.find("does not explain: final_out (worst element used ", at) != std::string::npos);
  CHECK(r.output.find("within the fp32 rounding bound; stale rows under relative L2") != std::string::npos);
  CHECK(r.output.find(" of the rounding bound, relative L2 ", at) != std::string::npos);

  const CliRun j = run_moesim("diagnose '" + path + "' --json");
  INFO(j.output);
  CHECK(j.code == 1);
  CHECK(j.output.find("\"consistent\": false") != std::string::npos);
  CHECK(j.output.find("\"best\": \"weights-twice\"") != std::string::npos);
  CHECK(j.output.find("{\"position\": 1, \"key\": \"weights-twice\"") != std::string::npos);
  CHECK(j.output.find("\"calc_diff\": ") != std::string::npos);

  // --only: the correct integration and the named models, nothing else.
  const CliRun o = run_moesim("diagnose '" + path + "' --only weights-never,weights-twice");
  INFO(o.output);
  CHECK(o.code == 1);
  CHECK(o.output.find("  1. weights-twice:") != std::string::npos);
  CHECK(o.output.find("  3. weights-never:") != std::string::npos);
  CHECK(o.output.find("all-k") == std::string::npos);
  const CliRun bad = run_moesim("diagnose '" + path + "' --only weights-thrice");
  CHECK(bad.code == 2);
  CHECK(bad.output.find("unknown hypothesis 'weights-thrice' (expected correct, weights-twice") != std::string::npos);
}

TEST_CASE("buffers only: structural hypotheses ranked, the rest listed as untested") {
  SimOptions o = options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum);
  o.dispatch.negative = NegativeIds::rank0;
  const std::string path = write_capture("rank0_buffers", o, false);
  const CliRun r = run_moesim("diagnose '" + path + "'");
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK(r.output.find("no outputs (only hypotheses that change the buffers are ranked)") != std::string::npos);
  CHECK(r.output.find("  1. minus-one-to-rank0:") != std::string::npos);
  CHECK(r.output.find("not tested: weights-twice: predicts the correct integration's buffers: needs captured outputs") !=
        std::string::npos);
}

TEST_CASE("errors: exit 2 with one line") {
  Trace tr = make_trace(diagnose_shape());
  const std::string bare = tmp("diagnose_bare.h5");
  write_trace(tr, bare);
  const CliRun none = run_moesim("diagnose '" + bare + "'");
  CHECK(none.code == 2);
  CHECK(none.output.find("nothing captured") != std::string::npos);
  CHECK(none.output.find(bare) != std::string::npos);
  const CliRun missing = run_moesim("diagnose '" + tmp("diagnose_absent.h5") + "'");
  CHECK(missing.code == 2);
  const CliRun layer = run_moesim("diagnose '" + write_capture("layer", options(DispatchModel::mori, ConsumerModel::aiter_mask,
                                                                                  CombineModel::rank_sum)) + "' --layer 3");
  CHECK(layer.code == 2);
  CHECK(layer.output.find("layer 3 out of range") != std::string::npos);
  const CliRun only = run_moesim("diagnose '" + bare + "' --only nonsense");
  CHECK(only.code == 2);
  const std::string ok = write_capture("backend", options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  const CliRun tpu = run_moesim("diagnose '" + ok + "' --backend tpu");
  CHECK(tpu.code == 2);
  CHECK(tpu.output.find("--backend is cpu, gpu or gpu-fast, not 'tpu'") != std::string::npos);
  const CliRun gpu = run_moesim("diagnose '" + ok + "' --backend gpu");  // 0 on a GPU machine, same verdict
  if (gpu.code != 0) {
    CHECK(gpu.code == 2);
    CHECK((gpu.output.find("built without a GPU backend") != std::string::npos ||
           gpu.output.find("gpu: device 0 not present") != std::string::npos));
  }
  const CliRun help = run_moesim("diagnose --help");
  CHECK(help.code == 0);
  CHECK(help.output.find("minus-one-to-rank0") != std::string::npos);
  CHECK(help.output.find("3: the buffers are consistent with the correct integration but the consumer was not tested") !=
        std::string::npos);
  CHECK(help.output.find("4: undecided") != std::string::npos);
}

TEST_CASE("total_recv filling the buffer exactly: nothing overflowed is said, not that rows may have been dropped") {
  Trace tr = make_trace(diagnose_shape());
  tr.config.library = "mori";
  capture_run(tr, options(DispatchModel::mori, ConsumerModel::aiter_mask, CombineModel::rank_sum));
  for (auto& in : tr.layers[0].ranks) in.captured.buffer_rows = in.captured.total_recv;
  const std::string path = tmp("diagnose_full_buffer.h5");
  write_trace(tr, path);
  const CliRun r = run_moesim("diagnose '" + path + "'");
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("total_recv fills the whole buffer exactly; the routing sends no more rows: nothing overflowed") !=
        std::string::npos);
  CHECK(r.output.find("may have been dropped") == std::string::npos);
}
