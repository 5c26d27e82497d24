// The bundled traces are what tools/regen-traces.sh makes today. The check regenerates them into
// the test folder and compares every group, dataset (shape, element type, bytes) and attribute
// through the HDF5 API rather than the files' bytes, so it holds across HDF5 library versions;
// only the root's moesim_version attribute is left out, so a version bump needs no regeneration.
#include <doctest/doctest.h>
#include <hdf5.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "trace_io.hpp"

using namespace moesim;

namespace {
// name -> description of everything in a file: "group", or "dataset <class> <size> <sign> [dims]"
// followed by the raw bytes; attributes as "name@attr" entries.
using Content = std::map<std::string, std::string>;

std::string raw_type(hid_t t) {
  return std::to_string(H5Tget_class(t)) + " " + std::to_string(H5Tget_size(t)) + " " +
         std::to_string(H5Tget_class(t) == H5T_INTEGER ? H5Tget_sign(t) : -1);
}

void add_attrs(hid_t obj, const std::string& name, Content& out) {
  H5O_info_t info;
  H5Oget_info(obj, &info);
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    hid_t a = H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT);
    char an[256] = {};
    H5Aget_name(a, sizeof an, an);
    hid_t t = H5Aget_type(a);
    hid_t s = H5Aget_space(a);
    const hssize_t n = H5Sget_simple_extent_npoints(s);
    std::string bytes(static_cast<std::size_t>(n) * H5Tget_size(t), '\0');
    hid_t mem = H5Tget_class(t) == H5T_STRING ? H5Tcopy(t) : H5Tget_native_type(t, H5T_DIR_ASCEND);
    H5Aread(a, mem, bytes.data());
    out[name + "@" + an] = raw_type(t) + " " + bytes;
    H5Tclose(mem);
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
  }
}

herr_t visit(hid_t root, const char* name, const H5O_info_t* info, void* data) {
  auto& out = *static_cast<Content*>(data);
  const std::string n = name;
  hid_t obj = H5Oopen(root, name, H5P_DEFAULT);
  if (info->type == H5O_TYPE_DATASET) {
    hid_t t = H5Dget_type(obj), s = H5Dget_space(obj);
    const int rank = H5Sget_simple_extent_ndims(s);
    std::vector<hsize_t> dims(rank);
    H5Sget_simple_extent_dims(s, dims.data(), nullptr);
    std::string desc = "dataset " + raw_type(t) + " [";
    for (auto d : dims) desc += std::to_string(d) + ",";
    hid_t mem = H5Tget_native_type(t, H5T_DIR_ASCEND);
    std::string bytes(static_cast<std::size_t>(H5Sget_simple_extent_npoints(s)) * H5Tget_size(mem), '\0');
    if (!bytes.empty()) H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    out[n] = desc + "] " + bytes;
    H5Tclose(mem);
    H5Sclose(s);
    H5Tclose(t);
  } else {
    out[n] = "group";
  }
  add_attrs(obj, n, out);
  H5Oclose(obj);
  return 0;
}

Content content_of(const std::string& path) {
  Content out;
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE_MESSAGE(f >= 0, path);
  H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, visit, &out);  // "." is the root, with its attributes
  H5Fclose(f);
  out.erase(".@moesim_version");
  return out;
}

std::string attr(const std::string& path, const std::string& name) {
  return h5::File::open_read(path).attr_string("/", name);
}
}  // namespace

TEST_CASE("bundled traces match what tools/regen-traces.sh makes now") {
  const std::string src = MOESIM_SOURCE_DIR;
  const std::string out = std::string(MOESIM_TEST_TMP) + "/bundled";
  std::filesystem::remove_all(out);
  const std::string cmd = src + "/tools/regen-traces.sh '" + MOESIM_BINARY + "' '" + out + "' >/dev/null";
  const int status = std::system(cmd.c_str());
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  for (const char* name : {"default.h5", "seed-ep8.h5"}) {
    CAPTURE(name);
    const std::string bundled = src + "/traces/bundled/" + name, fresh = out + "/" + name;
    CHECK(std::filesystem::file_size(bundled) < 1500u * 1024);
    CHECK(attr(bundled, "command").rfind(std::string("moesim gen -o ") + name + " ", 0) == 0);
    const Content a = content_of(bundled), b = content_of(fresh);
    CHECK(a.size() > 20);
    for (const auto& entry : a) {
      const auto& k = entry.first;  // not a structured binding: clang 14 cannot capture one
      const auto& v = entry.second;
      CAPTURE(k);
      auto it = b.find(k);
      REQUIRE_MESSAGE(it != b.end(), "missing from the regenerated file");
      CHECK_MESSAGE(it->second == v, "differs; run tools/regen-traces.sh build/moesim");
    }
    for (const auto& entry : b) {
      const auto& k = entry.first;
      CAPTURE(k);
      CHECK_MESSAGE(a.count(k) == 1, "missing from the bundled file; run tools/regen-traces.sh build/moesim");
    }
  }
}

TEST_CASE("bundled traces hold the scenarios they are named for") {
  const std::string dir = std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/";
  ReadReport report;
  const Trace d = read_trace(dir + "default.h5", {}, &report);
  CHECK(report.warnings.empty());
  CHECK(d.config.num_ranks == 4);
  CHECK(d.config.num_experts == 16);
  CHECK(d.config.top_k == 4);
  CHECK(d.layers.size() == 2);
  CHECK(d.layers[0].weights.has_value());
  const Trace s = read_trace(dir + "seed-ep8.h5", {}, &report);
  CHECK(report.warnings.empty());
  CHECK(s.config.num_ranks == 8);
  CHECK(s.config.num_experts == 256);
  CHECK(s.config.experts_per_rank() == 32);
  CHECK(s.config.top_k == 8);
  CHECK(s.config.num_shared_experts == 1);
  CHECK(s.config.routed_scaling_factor == 2.5);
  CHECK_FALSE(s.layers[0].weights.has_value());  // generated from the seed
  // DeepSeek-V3 grouped routing: 8 groups of 32, each token within 4 of them.
  for (const auto& r : s.layers[0].ranks)
    for (std::int64_t t = 0; t < r.num_tokens; ++t) {
      std::set<int> groups;
      for (int k = 0; k < 8; ++k) groups.insert(r.topk_ids[t * 8 + k] / 32);
      CHECK(groups.size() <= 4);
    }
}
