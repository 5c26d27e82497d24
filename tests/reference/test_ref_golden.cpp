// Golden files: layout, attributes and dtypes per numerics mode, read back and compared with the
// in-memory outputs; bad input writes nothing.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>

#include "../../reference/golden.hpp"
#include "error.hpp"
#include "ref_fixtures.hpp"
#include "trace_io.hpp"

using namespace moesim;
using namespace moesim::testing;

namespace {

std::string tmp(const std::string& name) { return std::string(MOESIM_TEST_TMP) + "/ref_golden_" + name; }

// Exit status of a shell command.
int shell(const std::string& cmd) { return WEXITSTATUS(std::system(cmd.c_str())); }

std::string written_trace() {
  TraceShape s;
  s.shared = 1, s.token_dtype = DType::bf16;
  Trace t = make_trace(s);
  t.config.weight_dtype = DType::f32;
  const std::string path = tmp("trace.h5");
  write_trace(t, path);
  return path;
}

std::uint64_t t_rows(const std::string& trace_path) {
  return static_cast<std::uint64_t>(read_trace(trace_path).layers[0].ranks[0].num_tokens);
}

}  // namespace

TEST_CASE("golden files hold final and expert outputs in the mode's dtype, with stage and axes") {
  const std::string trace_path = written_trace();
  const Trace t = read_trace(trace_path);
  for (Numerics n : {Numerics::exact, Numerics::fp32, Numerics::bf16}) {
    CAPTURE(name(n));
    ReferenceOptions o;
    o.numerics = n;
    const auto outs = run_reference(t, o);
    const std::string out = tmp(std::string(name(n)) + ".h5");
    write_golden(out, t, outs, n, "moesim golden test");
    const h5::File f = h5::File::open_read(out);
    CHECK(f.attr_string("/", "format") == "moesim-golden");
    CHECK(f.attr_string("/", "numerics") == name(n));
    CHECK(f.attr_int("/", "schema_version") == 2);
    CHECK(f.attr_string("/", "trace_hash") == trace_file_hash(trace_path));
    CHECK(f.attr_string("/", "trace_hash").size() == 16);
    CHECK(f.attr_string("/", "trace_path") == trace_path);
    CHECK(!f.has_attr("/", "fp8_format"));  // only fp8 numerics quantize
    for (int r = 0; r < t.config.num_ranks; ++r) {
      const std::string base = rank_path(0, r);
      const auto info = f.info(base + "/expert_out");
      const auto T = static_cast<std::uint64_t>(t.layers[0].ranks[r].num_tokens);
      CHECK(info.dims == std::vector<std::uint64_t>{T, 3, 40});
      CHECK(f.attr_string(base + "/final_out", "stage") == "final");
      CHECK(f.attr_string(base + "/expert_out", "stage") == "expert");
      CHECK(f.attr_string(base + "/expert_out", "axes") == "token,slot,hidden");
      CHECK(f.attr_string(base + "/final_out", "axes") == "token,hidden");
      const auto back = f.read_rows_as_double(base + "/final_out", 0, T);
      if (n == Numerics::bf16) {
        CHECK(f.info(base + "/final_out").declared == "bfloat16");
        const auto bits = f.read<std::uint16_t>(base + "/final_out");
        for (std::size_t i = 0; i < bits.size(); ++i)
          REQUIRE(bf16_bits_to_float(bits[i]) == outs[0].ranks[r].final_out.f32[i]);
      } else {
        CHECK(f.info(base + "/final_out").stored == (n == Numerics::exact ? DType::f64 : DType::f32));
        for (std::size_t i = 0; i < back.size(); ++i) REQUIRE(back[i] == outs[0].ranks[r].final_out[i]);
      }
    }
  }
}

TEST_CASE("moesim golden --numerics fp8 records the dispatch format it quantized bf16 tokens to") {
  const std::string trace_path = written_trace();  // bf16 tokens: --fp8 decides the format
  std::vector<std::vector<float>> finals;
  for (const char* fmt : {"fp8", "fp8_fnuz"}) {
    const std::string out = tmp(std::string("fp8_format_") + fmt + ".h5");
    REQUIRE(shell(std::string(MOESIM_BINARY) + " golden " + trace_path + " -o " + out + " --numerics fp8 --fp8 " +
                  fmt + " > /dev/null") == 0);
    const h5::File f = h5::File::open_read(out);
    CHECK(f.attr_string("/", "fp8_format") == (std::string(fmt) == "fp8" ? "float8_e4m3fn" : "float8_e4m3fnuz"));
    const auto v = f.read_rows_as_double(rank_path(0, 0) + "/final_out", 0, t_rows(trace_path));
    finals.emplace_back(v.begin(), v.end());
  }
  CHECK(finals[0] != finals[1]);  // the record matters: the two formats give other outputs
}

TEST_CASE("the trace hash is FNV-1a 64 of the file's bytes") {
  const std::string p = tmp("hash.bin");
  std::FILE* f = std::fopen(p.c_str(), "wb");
  std::fputs("a", f);
  std::fclose(f);
  CHECK(trace_file_hash(p) == "af63dc4c8601ec8c");  // FNV-1a 64 of "a"
  CHECK_THROWS_AS(trace_file_hash(tmp("missing.bin")), Error);
}

TEST_CASE("moesim golden writes a file, and nothing on bad input") {
  const std::string bin = MOESIM_BINARY;
  if (bin.empty() || !std::filesystem::exists(bin)) return;  // the CLI is not built
  const std::string trace_path = written_trace(), out = tmp("cli.h5"), bad = tmp("cli_bad.h5");
  std::filesystem::remove(out);
  std::filesystem::remove(bad);
  CHECK(shell(bin + " golden '" + trace_path + "' -o '" + out + "' --numerics bf16 --threads 2 >/dev/null") == 0);
  CHECK(h5::File::open_read(out).attr_string("/", "numerics") == "bf16");
  CHECK(shell(bin + " golden '" + tmp("none.h5") + "' -o '" + bad + "' 2>/dev/null") == 2);
  CHECK_FALSE(std::filesystem::exists(bad));
  CHECK(shell(bin + " golden '" + trace_path + "' -o '" + bad + "' --numerics fp16 2>/dev/null") == 2);
  CHECK_FALSE(std::filesystem::exists(bad));
}

TEST_CASE("moesim golden writes the same bits with 1 and 2 threads") {
  const std::string bin = MOESIM_BINARY;
  if (bin.empty() || !std::filesystem::exists(bin)) return;  // the CLI is not built
  const std::string trace_path = written_trace(), one = tmp("t1.h5"), two = tmp("t2.h5");
  for (const auto& [out, threads] : {std::pair{one, 1}, std::pair{two, 2}})
    REQUIRE(shell(bin + " golden '" + trace_path + "' -o '" + out + "' --numerics bf16 --threads " +
                  std::to_string(threads) + " >/dev/null") == 0);
  const h5::File a = h5::File::open_read(one), b = h5::File::open_read(two);
  for (int r = 0; r < 2; ++r)
    for (const char* ds : {"/final_out", "/expert_out"}) {
      const std::string p = rank_path(0, r) + ds;
      CAPTURE(p);
      CHECK(a.read<std::uint16_t>(p) == b.read<std::uint16_t>(p));
    }
}

TEST_CASE("a rank without tokens gets empty datasets") {
  TraceShape s;
  Trace t = make_trace(s);
  RankInput& in = t.layers[0].ranks[1];
  in.num_tokens = 0;
  in.x.clear(), in.topk_ids.clear(), in.topk_weights.clear();
  const auto outs = run_reference(t, {});
  CHECK(outs[0].ranks[1].final_out.size() == 0);
  const std::string trace_path = written_trace(), out = tmp("empty_rank.h5");
  t.path = trace_path;  // hashed; its contents do not matter here
  write_golden(out, t, outs, Numerics::exact, "test");
  const h5::File f = h5::File::open_read(out);
  CHECK(f.info(rank_path(0, 1) + "/final_out").dims == std::vector<std::uint64_t>{0, 40});
  CHECK(f.info(rank_path(0, 0) + "/final_out").dims == std::vector<std::uint64_t>{7, 40});
}
