// libhdf5's own crashes on damaged files stay in the probing child (traces/contained.hpp), also
// at a path this process wrote itself, whose re-reads skip the probe only while unchanged.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "contained.hpp"
#include "error.hpp"
#include "h5.hpp"
#include "generate.hpp"
#include "test_files.hpp"
#include "trace_io.hpp"

using namespace moesim;

namespace {
const std::string kDamaged = std::string(MOESIM_SOURCE_DIR) + "/tests/fuzz/regressions/trace/hdf5-attr-iterate-segv.h5";

// Whether libhdf5 segfaults on this file depends on its heap's state, so the child may crash
// ("the HDF5 library crashed reading it") or finish and let the reader refuse the file: either
// way this process survives with one error naming the file and /config.
void check_refused(const std::string& path) {
  try {
    read_trace(path);
    FAIL("the damaged file was accepted");
  } catch (const Error& e) {
    const std::string m = e.what();
    CAPTURE(m);
    CHECK(m.rfind(path + ": /config: ", 0) == 0);
    CHECK(m.find('\n') == std::string::npos);
  }
}
}  // namespace

TEST_CASE("a file that crashes libhdf5 is refused in one line naming the file and the step") { check_refused(kDamaged); }

TEST_CASE("a file this process wrote is probed again once something else changed it") {
  GenOptions g;
  g.num_ranks = 2;
  g.num_experts = 4;
  g.top_k = 2;
  g.hidden = 16;
  g.intermediate = 8;
  g.tokens_per_rank = 4;
  const std::string path = test::tmp("contained-rewritten.h5");
  write_trace(generate(g), path);
  CHECK(read_trace(path).layers.size() == 1);  // written here: read without the child
  {  // another writer replaces the bytes in place (same inode, new size and time)
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << test::bytes_of(kDamaged);
  }
  check_refused(path);
}

TEST_CASE("the probing child hands its records to the parent whole and in order, any bytes") {
  const std::vector<std::string> sent{std::string("a\0b", 3), "line\nbreak", std::string(70000, 'x'), ""};
  const auto got = contained::run("f.h5", [&](const contained::Progress& p) {
    for (size_t i = 0; i < sent.size(); ++i) {
      p.at("step " + std::to_string(i));
      p.found(sent[i]);
    }
  });
  CHECK(got == sent);
}

TEST_CASE("a damaged file's attributes are listed by the probe, never after lookups by name") {
  // This file's /config header crashed libhdf5 1.10.8 when diff listed its attributes after the
  // trace reader had looked some up by name, though the child's own listing came through.
  const std::string path =
      std::string(MOESIM_SOURCE_DIR) + "/tests/fuzz/regressions/trace/hdf5-attr-list-after-lookup-segv.h5";
  try {
    const auto f = h5::File::open_read(path);
    CHECK_FALSE(f.has_attr("/config", "topk_weights_include_scaling"));
    const auto names = f.attr_names("/");
    CHECK(std::find(names.begin(), names.end(), "format") != names.end());
    f.attr_names("/config");
    FAIL("the damaged header's attributes were listed");
  } catch (const Error& e) {
    const std::string m = e.what();
    CAPTURE(m);
    CHECK(m.rfind(path + ": /config: ", 0) == 0);
  }
}
