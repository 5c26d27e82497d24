// An output that is one of the command's inputs, or sits in a missing folder, is refused before
// any work: one line, exit 2, the input byte for byte as it was.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "error.hpp"
#include "output_path.hpp"
#include "test_files.hpp"
#include "traces/cli_run.hpp"

namespace {

using moesim::test::bytes_of;
using moesim::test::run_moesim;
using moesim::test::tmp;

std::string fresh_trace(const std::string& name) {
  const std::string p = tmp("outpath_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::copy_file(std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/default.h5", p,
                             std::filesystem::copy_options::overwrite_existing);
  return p;
}

}  // namespace

TEST_CASE("check_output_path: the same file through a symbolic or hard link, a missing folder, a folder") {
  const std::string t = fresh_trace("lib.h5"), sym = t + ".sym", hard = t + ".hard";
  std::filesystem::remove(sym);
  std::filesystem::remove(hard);
  std::filesystem::create_symlink(t, sym);
  std::filesystem::create_hard_link(t, hard);
  const std::string msg = ": cannot write: it is this command's input " + t + " (the input is never modified)";
  CHECK_THROWS_WITH_AS(moesim::check_output_path(t, {t}), (t + msg).c_str(), moesim::Error);
  CHECK_THROWS_WITH_AS(moesim::check_output_path(sym, {t}), (sym + msg).c_str(), moesim::Error);
  CHECK_THROWS_WITH_AS(moesim::check_output_path(hard, {t}), (hard + msg).c_str(), moesim::Error);
  CHECK_NOTHROW(moesim::check_output_path(t + ".new", {t}));
  CHECK_THROWS_WITH_AS(moesim::check_output_path(tmp("no_such_folder/x.h5"), {}),
                       (tmp("no_such_folder/x.h5") + ": cannot write: folder " + tmp("no_such_folder") +
                        " does not exist").c_str(),
                       moesim::Error);
  CHECK_THROWS_WITH_AS(moesim::check_output_path(tmp(""), {}), (tmp("") + ": cannot write: it is a folder").c_str(),
                       moesim::Error);
  std::filesystem::remove(sym);
  std::filesystem::remove(hard);
}

TEST_CASE("golden, run, bisect and diff --report refuse to overwrite their own input") {
  const std::string t = fresh_trace("cli.h5");
  const std::string before = bytes_of(t);
  for (const std::string& args : {"golden '" + t + "' -o '" + t + "'", "run '" + t + "' -o '" + t + "'",
                                  "bisect '" + t + "' --consumer all-k -o '" + t + "'",
                                  "diff '" + t + "' '" + t + "' --report '" + t + "'"}) {
    CAPTURE(args);
    const auto r = run_moesim(args);
    CHECK(r.code == 2);
    CHECK(r.output.find(": cannot write: it is this command's input") != std::string::npos);
    CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
    CHECK(bytes_of(t) == before);
  }
  // A missing folder is reported before the work, not after it.
  const auto r = run_moesim("golden '" + t + "' -o '" + tmp("no_such_folder/g.h5") + "'");
  CHECK(r.code == 2);
  CHECK(r.output.find("cannot write: folder") != std::string::npos);
}

TEST_CASE("SIGINT or SIGTERM while an output is written leaves no temporary and no output") {
  for (const char* sig : {"INT", "TERM"}) {
    CAPTURE(sig);
    const std::string dir = tmp("outpath_signal_" + std::to_string(::getpid()) + sig);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    // gen opens OUT.tmpPID first, then spends seconds generating tokens: the signal lands mid-write.
    const std::string script = "cd '" + dir + "' && '" + std::string(MOESIM_BINARY) +
                               "' gen -o big.h5 --ranks 8 --tokens 4096 --hidden 2048 --intermediate 64 --experts 16 "
                               "--top-k 2 >/dev/null 2>&1 & pid=$!; for i in $(seq 200); do ls '" +
                               dir + "'/big.h5.tmp* >/dev/null 2>&1 && break; sleep 0.05; done; kill -" + sig +
                               " $pid; wait $pid; echo status=$?";
    FILE* p = popen(script.c_str(), "r");
    REQUIRE(p);
    char buf[256] = {};
    std::string out;
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
    CHECK(out == std::string("status=") + (std::string(sig) == "INT" ? "130" : "143") + "\n");  // died of the signal
    CHECK(std::filesystem::is_empty(dir));
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("a write that fails mid-file (file size limit) is one line and exit 2, nothing left behind") {
  const std::string dir = tmp("outpath_fsize_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // SIGXFSZ ignored, as a job scheduler's limit or a full disk shows itself: writes fail with EFBIG.
  const std::string script = "cd '" + dir + "' && (trap '' XFSZ; ulimit -f 64; '" + std::string(MOESIM_BINARY) +
                             "' golden '" + std::string(MOESIM_SOURCE_DIR) +
                             "/traces/bundled/default.h5' -o g.h5 2>&1); echo status=$?";
  FILE* p = popen(script.c_str(), "r");
  REQUIRE(p);
  char buf[512] = {};
  std::string out;
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  pclose(p);
  CHECK(out == "moesim golden: g.h5: cannot flush file: File too large\nstatus=2\n");  // not 139
  CHECK(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}
