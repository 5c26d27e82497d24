// Each kind of damaged or malformed trace gives one exact line naming file, dataset and index,
// and `moesim validate` exits 2 with that line. Bad files are made by writing a valid trace and
// then altering it through the HDF5 C API.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "error.hpp"
#include "generate.hpp"
#include "h5.hpp"
#include "test_files.hpp"
#include "trace_io.hpp"
#include "traces/cli_run.hpp"

using namespace moesim;
using moesim::test::tmp;
using moesim::test::bytes_of;

namespace {
// The shape of the small valid trace: 2 ranks, 8 experts, top-2, H 16, 4 tokens per rank.
GenOptions small() {
  GenOptions o;
  o.num_ranks = 2;
  o.num_experts = 8;
  o.top_k = 2;
  o.hidden = 16;
  o.intermediate = 8;
  o.tokens_per_rank = 4;
  return o;
}

// A small valid trace, all stored.
std::string valid(const std::string& name, bool stored_weights = true) {
  GenOptions o = small();
  o.store_weights = stored_weights;
  Trace t = generate(o);
  t.command = "test";
  const std::string path = tmp("malformed_" + name + ".h5");
  write_trace(t, path);
  return path;
}

// Read-write access for the alterations; closes on scope exit.
struct Rw {
  hid_t f;
  explicit Rw(const std::string& path) : f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) { REQUIRE(f >= 0); }
  ~Rw() { H5Fclose(f); }

  void set_int(const char* obj, const char* name, long long v) {
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0) H5Adelete_by_name(f, obj, name, H5P_DEFAULT);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0);
    H5Aclose(a);
    H5Sclose(s);
  }
  void set_string(const char* obj, const char* name, const std::string& v) {
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0) H5Adelete_by_name(f, obj, name, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, v.size());
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(H5Awrite(a, t, v.data()) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
  }
  void remove_attr(const char* obj, const char* name) { REQUIRE(H5Adelete_by_name(f, obj, name, H5P_DEFAULT) >= 0); }
  void remove(const char* obj) { REQUIRE(H5Ldelete(f, obj, H5P_DEFAULT) >= 0); }

  // Replaces a dataset by one of another shape or element type (contents: 0, 1, 2 ...).
  void replace(const char* ds, std::vector<hsize_t> dims, hid_t disk, hid_t mem) {
    if (H5Lexists(f, ds, H5P_DEFAULT) > 0) remove(ds);
    hid_t s = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    hid_t d = H5Dcreate2(f, ds, disk, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(d >= 0);
    hsize_t n = 1;
    for (auto x : dims) n *= x;
    std::vector<double> v(n);
    for (hsize_t i = 0; i < n; ++i) v[i] = static_cast<double>(i);
    hid_t mt = mem;
    std::vector<std::int32_t> iv(v.begin(), v.end());
    std::vector<float> fv(v.begin(), v.end());
    REQUIRE(H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     mt == H5T_NATIVE_INT32 ? static_cast<const void*>(iv.data()) : fv.data()) >= 0);
    H5Dclose(d);
    H5Sclose(s);
  }

  // Overwrites one element of an int32 or float dataset in place.
  template <class T>
  void poke(const char* ds, hsize_t flat, T value, hid_t mem) {
    hid_t d = H5Dopen2(f, ds, H5P_DEFAULT);
    REQUIRE(d >= 0);
    hid_t s = H5Dget_space(d);
    const int rank = H5Sget_simple_extent_ndims(s);
    std::vector<hsize_t> dims(rank), coord(rank);
    H5Sget_simple_extent_dims(s, dims.data(), nullptr);
    for (int i = rank - 1; i >= 0; --i) {
      coord[i] = flat % dims[i];
      flat /= dims[i];
    }
    REQUIRE(H5Sselect_elements(s, H5S_SELECT_SET, 1, coord.data()) >= 0);
    hsize_t one = 1;
    hid_t m = H5Screate_simple(1, &one, nullptr);
    REQUIRE(H5Dwrite(d, mem, m, s, H5P_DEFAULT, &value) >= 0);
    H5Sclose(m);
    H5Sclose(s);
    H5Dclose(d);
  }
};

using test::CliRun;
CliRun validate_cli(const std::string& path) { return test::run_moesim("validate '" + path + "'"); }

// The library throws exactly `message` (after "PATH: "), and the command prints it on one line
// and exits 2 without touching the file.
void expect_rejected(const std::string& path, const std::string& message) {
  const std::string full = path + ": " + message;
  CHECK_THROWS_WITH_AS(read_trace(path), full.c_str(), Error);
  const std::string before = bytes_of(path);
  const CliRun r = validate_cli(path);
  CHECK(r.code == 2);
  CHECK(r.output == "moesim validate: " + full + "\n");
  CHECK(bytes_of(path) == before);
}
}  // namespace

TEST_CASE("a valid trace validates with exit 0 and prints ok") {
  const std::string path = valid("ok");
  const CliRun r = validate_cli(path);
  CHECK(r.code == 0);
  CHECK(r.output == "ok\n");
}

TEST_CASE("truncated file") {
  const std::string path = valid("truncated");
  const std::string bytes = bytes_of(path);
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size() / 2));
  expect_rejected(path, "cannot open: truncated or damaged HDF5 file");
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), 4);
  expect_rejected(path, "cannot open: not an HDF5 file");
}

TEST_CASE("missing file") {
  const std::string path = tmp("malformed_does_not_exist.h5");
  std::filesystem::remove(path);
  CHECK_THROWS_WITH_AS(read_trace(path), (path + ": cannot open: no such file").c_str(), Error);
  const CliRun r = validate_cli(path);
  CHECK(r.code == 2);
  CHECK(r.output == "moesim validate: " + path + ": cannot open: no such file\n");
}

TEST_CASE("a FIFO or a folder is refused before it is opened (a FIFO would block every read forever)") {
  const std::string fifo = tmp("malformed_fifo_" + std::to_string(::getpid()) + ".h5");
  std::filesystem::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Under a deadline: the old behaviour was a hang (timeout's exit 124), not a failure.
  const std::string out = fifo + ".out";
  const int st = std::system(("timeout 20 '" + std::string(MOESIM_BINARY) + "' validate '" + fifo + "' > '" + out +
                              "' 2>&1").c_str());
  CHECK(WEXITSTATUS(st) == 2);
  CHECK(bytes_of(out) == "moesim validate: " + fifo + ": cannot open: not a regular file\n");
  std::filesystem::remove(out);
  CHECK_THROWS_WITH_AS(read_trace(fifo), (fifo + ": cannot open: not a regular file").c_str(), Error);
  std::filesystem::remove(fifo);
  const std::string dir = tmp("malformed_dir_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  CHECK_THROWS_WITH_AS(read_trace(dir), (dir + ": cannot open: not a regular file").c_str(), Error);
  std::filesystem::remove(dir);
}

TEST_CASE("a captured total_recv beyond the layer's (token, expert) pairs is refused before anything sizes by it") {
  const std::string path = valid("total_recv");
  {
    Rw f(path);
    const hid_t g = H5Gcreate2(f.f, "/layers/0/ranks/1/captured", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(g >= 0);
    H5Gclose(g);
    f.set_int("/layers/0/ranks/1/captured", "total_recv", 1LL << 40);
  }
  // 2 ranks x 4 tokens x top-2.
  expect_rejected(path, "/layers/0/ranks/1/captured: total_recv 1099511627776 exceeds the layer's 16 (token, expert) pairs");
}

TEST_CASE("wrong shape") {
  const std::string path = valid("shape");
  Rw(path).replace("/layers/0/ranks/1/topk_ids", {4, 3}, H5T_STD_I32LE, H5T_NATIVE_INT32);
  expect_rejected(path, "/layers/0/ranks/1/topk_ids: shape [4, 3], expected [4, 2]");
  const std::string w = valid("shape_w1");
  Rw(w).replace("/layers/0/weights/w2", {8, 16}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
  expect_rejected(w, "/layers/0/weights/w2: shape [8, 16], expected [8, 16, 8]");
}

TEST_CASE("wrong dtype") {
  const std::string ids = valid("dtype_ids");
  Rw(ids).replace("/layers/0/ranks/1/topk_ids", {4, 2}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
  expect_rejected(ids, "/layers/0/ranks/1/topk_ids: dtype is float32, expected int32");
  const std::string declared = valid("dtype_declared");
  Rw(declared).set_string("/layers/0/ranks/0/x", "dtype", "float16");
  expect_rejected(declared, "/layers/0/ranks/0/x: dtype is float16, expected bfloat16");
  const std::string ints = valid("dtype_int_x");
  Rw(ints).replace("/layers/0/ranks/0/x", {4, 16}, H5T_STD_I32LE, H5T_NATIVE_INT32);
  expect_rejected(ints, "/layers/0/ranks/0/x: dtype is int32, expected bfloat16");
}

TEST_CASE("tokens and weights must be stored as the declared dtype, even when it is float32") {
  GenOptions o = small();
  o.token_dtype = DType::f32;
  o.weight_dtype = DType::f32;
  o.store_weights = true;
  Trace t = generate(o);
  const std::string f64 = tmp("malformed_f32_as_f64.h5"), bf = tmp("malformed_f32_as_bf16.h5");
  write_trace(t, f64);
  write_trace(t, bf);
  Rw(f64).replace("/layers/0/ranks/0/x", {4, 16}, H5T_IEEE_F64LE, H5T_NATIVE_FLOAT);
  expect_rejected(f64, "/layers/0/ranks/0/x: dtype is float64, expected float32");
  {
    Rw f(bf);
    f.replace("/layers/0/weights/w1", {8, 16, 16}, H5T_STD_U16LE, H5T_NATIVE_FLOAT);
    f.set_string("/layers/0/weights/w1", "dtype", "bfloat16");
  }
  expect_rejected(bf, "/layers/0/weights/w1: dtype is bfloat16, expected float32");
  // uint16 patterns without their dtype attribute say nothing about what they hold.
  const std::string bare = valid("dtype_bare_u16");
  Rw(bare).replace("/layers/0/ranks/0/x", {4, 16}, H5T_STD_U16LE, H5T_NATIVE_FLOAT);
  expect_rejected(bare, "/layers/0/ranks/0/x: dtype is uint16 without a 'dtype' attribute, expected bfloat16");
}

TEST_CASE("ids out of range") {
  const std::string high = valid("ids_high");
  Rw(high).poke<std::int32_t>("/layers/0/ranks/1/topk_ids", 2 * 2 + 1, 8, H5T_NATIVE_INT32);
  expect_rejected(high, "/layers/0/ranks/1/topk_ids: index [2, 1]: id 8 out of range [-1, 8)");
  const std::string low = valid("ids_low");
  Rw(low).poke<std::int32_t>("/layers/0/ranks/0/topk_ids", 3 * 2, -2, H5T_NATIVE_INT32);
  expect_rejected(low, "/layers/0/ranks/0/topk_ids: index [3, 0]: id -2 out of range [-1, 8)");
}

TEST_CASE("NaN weights") {
  const std::string router = valid("nan_router");
  Rw(router).poke<float>("/layers/0/ranks/0/topk_weights", 3 * 2 + 1, std::nanf(""), H5T_NATIVE_FLOAT);
  expect_rejected(router, "/layers/0/ranks/0/topk_weights: index [3, 1]: value nan is not finite");
  // Expert weights are bf16 patterns: 0x7fc0 is a bf16 NaN. Element 21 of w1 [8, 16, 16] is row 1, column 5.
  const std::string expert = valid("nan_w1");
  Rw(expert).poke<std::uint16_t>("/layers/0/weights/w1", 21, 0x7fc0, H5T_NATIVE_UINT16);
  expect_rejected(expert, "/layers/0/weights/w1: index [1, 5]: value nan is not finite");
}

TEST_CASE("missing dataset") {
  const std::string w = valid("missing_weights");
  Rw(w).remove("/layers/0/ranks/0/topk_weights");
  expect_rejected(w, "/layers/0/ranks/0/topk_weights: missing dataset");
  const std::string x = valid("missing_x");
  Rw(x).remove("/layers/0/ranks/1/x");
  expect_rejected(x, "/layers/0/ranks/1/x: missing dataset (and no /generator/x)");
  const std::string g = valid("missing_generator", false);
  Rw(g).remove("/generator/weights");
  expect_rejected(g, "/layers/0/weights: missing: neither stored weights nor /generator/weights");
}

TEST_CASE("absurd sizes are refused before any allocation") {
  const std::string tokens = valid("absurd_tokens");
  Rw(tokens).set_int("/layers/0/ranks/0", "num_tokens", 1LL << 30);
  expect_rejected(tokens, "/layers/0/ranks/0: attribute 'num_tokens' = 1073741824 out of range [0, 16777216]");
  const std::string product = valid("absurd_product", false);
  {
    Rw f(product);
    f.set_int("/config", "hidden", 1 << 20);
    f.set_int("/layers/0/ranks/0", "num_tokens", 1 << 24);
  }
  expect_rejected(product, "/layers/0/ranks/0: absurd size: 16777216 tokens x hidden 1048576");
  const std::string experts = valid("absurd_experts");
  Rw(experts).set_int("/config", "num_experts", 1LL << 40);
  expect_rejected(experts, "/config: attribute 'num_experts' = 1099511627776 out of range [1, 1048576]");
  // A receive buffer of 2^31 rows: declared by the dataspace only, never allocated.
  const std::string recv = valid("absurd_recv");
  {
    Rw f(recv);
    hsize_t dims[2] = {hsize_t{1} << 31, 2}, chunk[2] = {1024, 2};
    hid_t s = H5Screate_simple(2, dims, nullptr);
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(p, 2, chunk);
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(l, 1);
    hid_t d = H5Dcreate2(f.f, "/layers/0/ranks/0/captured/recv_topk_ids", H5T_STD_I32LE, s, l, p, H5P_DEFAULT);
    REQUIRE(d >= 0);
    H5Dclose(d);
    H5Pclose(l);
    H5Pclose(p);
    H5Sclose(s);
  }
  expect_rejected(recv, "/layers/0/ranks/0/captured: absurd receive buffer of 2147483648 rows");
}

TEST_CASE("missing attribute") {
  const std::string path = valid("missing_attr");
  Rw(path).remove_attr("/config", "top_k");
  expect_rejected(path, "/config: missing attribute 'top_k'");
  const std::string tokens = valid("missing_num_tokens");
  Rw(tokens).remove_attr("/layers/0/ranks/1", "num_tokens");
  expect_rejected(tokens, "/layers/0/ranks/1: missing attribute 'num_tokens'");
}

TEST_CASE("wrong schema version or format") {
  const std::string path = valid("schema");
  Rw(path).set_int("/", "schema_version", 3);
  expect_rejected(path, "/: schema_version 3 is not supported (this moesim reads 1 to 2)");
  const std::string zero = valid("schema0");
  Rw(zero).set_int("/", "schema_version", 0);
  expect_rejected(zero, "/: schema_version 0 is not supported (this moesim reads 1 to 2)");
  const std::string format = valid("format");
  Rw(format).set_string("/", "format", "moesim-golden");
  expect_rejected(format, "/: not a moesim trace (attribute 'format' is not 'moesim-trace')");
}

TEST_CASE("schema v1 files read without v2's family attributes; v2 files must carry them") {
  const std::string v1 = valid("schema_v1");
  {
    Rw f(v1);
    f.set_int("/", "schema_version", 1);
    for (const char* a : {"topk_weights_include_scaling", "expert_bias", "shared_expert_gate"}) f.remove_attr("/config", a);
  }
  const Trace t = read_trace(v1);
  CHECK(!t.config.expert_bias);
  CHECK(!t.config.shared_expert_gate);
  CHECK(!t.config.topk_weights_include_scaling);
  CHECK(t.schema_version == 1);
  CHECK(moesim::test::run_moesim("info " + v1).output.find(v1 + ": moesim trace, schema v1\n") == 0);
  const std::string missing = valid("v2_missing_family");
  Rw(missing).remove_attr("/config", "expert_bias");
  expect_rejected(missing, "/config: missing attribute 'expert_bias'");
  const std::string v1_oss = valid("v1_swiglu_oai");
  {
    Rw f(v1_oss);
    f.set_int("/", "schema_version", 1);
    f.set_string("/config", "activation", "swiglu_oai_and_mul");
  }
  expect_rejected(v1_oss, "/config: attribute 'activation' = 'swiglu_oai_and_mul' needs schema_version 2");
  const std::string no_alpha = valid("swiglu_no_alpha");
  Rw(no_alpha).set_string("/config", "activation", "swiglu_oai_and_mul");
  expect_rejected(no_alpha, "/config: missing attribute 'swiglu_alpha'");
  const std::string flag = valid("family_flag_range");
  Rw(flag).set_int("/config", "topk_weights_include_scaling", 2);
  expect_rejected(flag, "/config: attribute 'topk_weights_include_scaling' = 2 out of range [0, 1]");
}

TEST_CASE("expert biases and the shared gate need their stored datasets") {
  const std::string generated = valid("bias_generated", false);
  Rw(generated).set_int("/config", "expert_bias", 1);
  expect_rejected(generated, "/layers/0/weights: missing: expert_bias = 1 needs stored weights");
  const std::string no_b1 = valid("bias_no_b1");
  Rw(no_b1).set_int("/config", "expert_bias", 1);
  expect_rejected(no_b1, "/layers/0/weights/b1: missing dataset");
  const std::string no_shared = valid("gate_no_shared");
  Rw(no_shared).set_int("/config", "shared_expert_gate", 1);
  expect_rejected(no_shared, "/config: attribute 'shared_expert_gate' = 1 needs num_shared_experts > 0");
  GenOptions o = small();  // float32 weights, so replaced datasets keep the weight dtype
  o.weight_dtype = DType::f32;
  o.store_weights = true;
  const std::string bad_b2 = tmp("malformed_bias_b2_shape.h5");
  write_trace(generate(o), bad_b2);
  {
    Rw f(bad_b2);
    f.set_int("/config", "expert_bias", 1);
    f.replace("/layers/0/weights/b1", {8, 16}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
    f.replace("/layers/0/weights/b2", {8, 8}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT);
  }
  expect_rejected(bad_b2, "/layers/0/weights/b2: shape [8, 8], expected [8, 16]");
}

TEST_CASE("duplicate ids within a row are a warning, not an error") {
  const std::string path = valid("duplicates");
  {
    Rw f(path);
    f.poke<std::int32_t>("/layers/0/ranks/1/topk_ids", 2 * 2 + 0, 5, H5T_NATIVE_INT32);
    f.poke<std::int32_t>("/layers/0/ranks/1/topk_ids", 2 * 2 + 1, 5, H5T_NATIVE_INT32);
  }
  ReadReport report;
  read_trace(path, {}, &report);
  REQUIRE(report.warnings.size() == 1);
  const std::string warning = path + ": /layers/0/ranks/1/topk_ids: row 2: expert 5 appears twice (slots 0 and 1)";
  CHECK(report.warnings[0] == warning);
  const CliRun r = validate_cli(path);
  CHECK(r.code == 0);
  CHECK(r.output == "warning: " + warning + "\nok\n");
}

TEST_CASE("warnings are counted and capped: a row of duplicates per token does not flood the output") {
  GenOptions o = small();
  o.tokens_per_rank = 40;  // 80 rows, every one with a duplicate id
  Trace t = generate(o);
  for (auto& in : t.layers[0].ranks)
    for (std::int64_t r = 0; r < in.num_tokens; ++r) in.topk_ids[r * 2 + 1] = in.topk_ids[r * 2];
  const std::string path = tmp("malformed_many_duplicates.h5");
  write_trace(t, path);
  ReadReport report;
  read_trace(path, {}, &report);
  CHECK(report.total_warnings == 80);
  CHECK(report.warnings.size() == ReadReport::kMaxWarnings);
  CHECK(report.more() == "... and 60 more warnings");
  const CliRun r = validate_cli(path);
  CHECK(r.code == 0);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == ReadReport::kMaxWarnings + 2);
  CHECK(r.output.find("warning: ... and 60 more warnings\nok\n") != std::string::npos);
}

TEST_CASE("info rejects what validate rejects, with the same message") {
  const std::string path = valid("info_bad_x");
  Rw(path).set_string("/layers/0/ranks/0/x", "dtype", "float16");
  const std::string message = path + ": /layers/0/ranks/0/x: dtype is float16, expected bfloat16\n";
  const CliRun v = validate_cli(path), i = test::run_moesim("info '" + path + "'");
  CHECK(v.code == 2);
  CHECK(i.code == 2);
  CHECK(v.output == "moesim validate: " + message);
  CHECK(i.output == "moesim info: " + message);
}

TEST_CASE("generator scales and routed_scaling_factor past 1000 are refused: they made all-NaN or infinite layers") {
  const std::string scale = valid("huge_scale", false);
  {
    Rw f(scale);
    const double v = 1e300;
    REQUIRE(H5Adelete_by_name(f.f, "/generator/weights", "scale", H5P_DEFAULT) >= 0);
    const hid_t s = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate_by_name(f.f, "/generator/weights", "scale", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT,
                                      H5P_DEFAULT);
    REQUIRE(H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Aclose(a);
    H5Sclose(s);
  }
  expect_rejected(scale, "/generator/weights: attribute 'scale' = " + std::to_string(1e300) + " out of range [0, 1000]");
  GenOptions o;
  o.routed_scaling_factor = 1e308;
  CHECK_THROWS_WITH_AS(generate(o), "--routed-scaling: must lie in [0, 1000]", Error);
}

TEST_CASE("a string attribute with text after a NUL byte is refused, not cut short") {
  const std::string path = valid("nul_activation");
  {
    Rw f(path);
    const std::string v("silu_and_mul\0junk", 17);
    H5Adelete_by_name(f.f, "/config", "activation", H5P_DEFAULT);
    const hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, v.size());
    const hid_t s = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate_by_name(f.f, "/config", "activation", t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(H5Awrite(a, t, v.data()) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
  }
  expect_rejected(path, "/config: attribute 'activation' has text after a NUL byte");
}

TEST_CASE("captured or placement written as a dataset instead of a group is refused, not ignored") {
  const std::string captured = valid("captured_dataset");
  Rw(captured).replace("/layers/0/ranks/1/captured", {4, 2}, H5T_STD_I32LE, H5T_NATIVE_INT32);
  expect_rejected(captured, "/layers/0/ranks/1/captured: expected a group, found a dataset");
  const std::string placement = valid("placement_dataset");
  Rw(placement).replace("/config/placement", {8}, H5T_STD_I32LE, H5T_NATIVE_INT32);
  expect_rejected(placement, "/config/placement: expected a group, found a dataset");
}

TEST_CASE("a dataset compressed with a filter this HDF5 lacks is named as such, not as damage") {
  const std::string path = valid("lzf");
  {
    Rw f(path);
    f.remove("/layers/0/ranks/0/x");
    const hsize_t dims[2] = {4, 16};
    const hid_t s = H5Screate_simple(2, dims, nullptr), p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(p, 2, dims);
    REQUIRE(H5Pset_filter(p, 32000, H5Z_FLAG_OPTIONAL, 0, nullptr) >= 0);  // LZF, as h5py writes it
    const hid_t d = H5Dcreate2(f.f, "/layers/0/ranks/0/x", H5T_STD_U16LE, s, H5P_DEFAULT, p, H5P_DEFAULT);
    REQUIRE(d >= 0);
    std::uint16_t chunk[64] = {};
    const hsize_t offset[2] = {0, 0};
    REQUIRE(H5Dwrite_chunk(d, H5P_DEFAULT, 0, offset, sizeof chunk, chunk) >= 0);  // marked as filtered
    H5Dclose(d);
    H5Pclose(p);
    H5Sclose(s);
    f.set_string("/layers/0/ranks/0/x", "dtype", "bfloat16");
  }
  REQUIRE(H5Zfilter_avail(32000) <= 0);
  expect_rejected(path, "/layers/0/ranks/0/x: read failed: it needs HDF5 filter 32000, which this HDF5 library does "
                        "not have (re-save it with gzip or no compression)");
}

TEST_CASE("hard-link cycles, soft links and deep nesting are refused before anything walks the file") {
  const std::string cycle = valid("link_cycle");
  REQUIRE(H5Lcreate_hard(Rw(cycle).f, "/layers", H5L_SAME_LOC, "/layers/0/loop", H5P_DEFAULT, H5P_DEFAULT) >= 0);
  expect_rejected(cycle, "/layers/0/loop: hard link to the group /layers seen before (a cycle or a shared group)");
  // diff walked such a file forever; now it stops at the same line.
  const std::string other = valid("link_cycle_other");
  const CliRun d = test::run_moesim("diff '" + other + "' '" + cycle + "'");
  CHECK(d.code == 2);
  CHECK(d.output.find(cycle + ": /layers/0/loop: hard link to the group /layers seen before") != std::string::npos);
  const std::string soft = valid("link_soft");
  REQUIRE(H5Lcreate_soft("/config", Rw(soft).f, "/layers/0/cfg", H5P_DEFAULT, H5P_DEFAULT) >= 0);
  expect_rejected(soft, "/layers/0/cfg: soft or external link: moesim reads only hard links");
  const std::string deep = valid("deep");
  {
    Rw f(deep);
    std::string p = "/layers/0/d";
    for (int i = 0; i < 40; ++i, p += "/d") {
      const hid_t g = H5Gcreate2(f.f, p.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      REQUIRE(g >= 0);
      H5Gclose(g);
    }
  }
  std::string at = "/layers/0";
  for (int i = 0; i < 31; ++i) at += "/d";
  expect_rejected(deep, at + ": groups nested deeper than 32 levels");
}

TEST_CASE("a dataset that stores nothing (fill values only) is refused before its size is allocated") {
  GenOptions o = small();
  o.num_ranks = 1;
  o.num_experts = 4;
  o.tokens_per_rank = 40000;  // x: 40000 x 16 bf16 = 1.28 MB, past the 1 MiB left unchecked
  const std::string path = tmp("malformed_fill_only.h5");
  write_trace(generate(o), path);
  {
    Rw f(path);
    f.remove("/layers/0/ranks/0/x");
    const hsize_t dims[2] = {40000, 16}, chunk[2] = {1000, 16};
    const hid_t s = H5Screate_simple(2, dims, nullptr), p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(p, 2, chunk);
    const hid_t d = H5Dcreate2(f.f, "/layers/0/ranks/0/x", H5T_STD_U16LE, s, H5P_DEFAULT, p, H5P_DEFAULT);
    REQUIRE(d >= 0);  // no chunk ever written
    H5Dclose(d);
    H5Pclose(p);
    H5Sclose(s);
    f.set_string("/layers/0/ranks/0/x", "dtype", "bfloat16");
  }
  expect_rejected(path, "/layers/0/ranks/0/x: holds no stored data (1280000 bytes of fill values only)");
}

TEST_CASE("attribute names are listed in name order in one pass, dense storage included") {
  const std::string path = valid("many_attrs");
  {
    Rw f(path);
    for (int i = 4999; i >= 0; --i) f.set_int("/layers/0", ("a" + std::to_string(i)).c_str(), i);  // dense storage
  }
  const auto f = h5::File::open_read(path);
  const auto names = f.attr_names("/layers/0");
  CHECK(std::is_sorted(names.begin(), names.end()));
  CHECK(std::count_if(names.begin(), names.end(), [](const std::string& n) { return n[0] == 'a'; }) == 5000);
  CHECK(std::find(names.begin(), names.end(), "a4321") != names.end());
}
