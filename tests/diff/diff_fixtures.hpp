#pragma once
// Crafted moesim files for the diff tests: run/golden-shaped files whose payloads encode their
// origin (rank, token, column), so a wrongly attributed element shows in the expected values.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "h5.hpp"
#include "trace_io.hpp"

namespace moesim::test {

inline std::string tmp(const std::string& name) { return std::string(MOESIM_TEST_TMP) + "/diff_" + name; }

inline void put(h5::File& f, const std::string& ds, const std::vector<std::uint64_t>& dims,
                const std::vector<float>& v, const std::string& stage = "", const std::string& axes = "",
                DType dtype = DType::f32) {
  write_values(f, ds, dims, v, dtype);
  if (!stage.empty()) f.set_attr(ds, "stage", stage);
  if (!axes.empty()) f.set_attr(ds, "axes", axes);
}

inline void put_ints(h5::File& f, const std::string& ds, const std::vector<std::uint64_t>& dims,
                     const std::vector<std::int32_t>& v, const std::string& stage = "", const std::string& axes = "") {
  f.write(ds, dims, v.data());
  if (!stage.empty()) f.set_attr(ds, "stage", stage);
  if (!axes.empty()) f.set_attr(ds, "axes", axes);
}

// A run-shaped file: R ranks of T tokens, hidden H, top-K; each rank receives every token of
// the next rank (src_rank = r+1 mod R, src_token = t), routed to experts (r*K + k) % E.
struct RunSpec {
  int ranks = 2, tokens = 4, hidden = 8, top_k = 2, experts = 4;
  std::string format = "moesim-run";
  DType dtype = DType::f32;
  bool reverse_rows = false;  // store received rows last to first, as another arrival order
  std::string id_space;       // the dispatch group's id_space attribute when not empty
  std::int64_t config_ranks = -1;  // make_routing's /config num_ranks when >= 0 (a damaged file's)
  // Change a value before it is written: (dataset leaf, rank, flat index, value) -> value.
  std::function<float(const std::string&, int, std::size_t, float)> edit;
};

inline float origin(int rank, std::int64_t token, std::int64_t col) { return rank * 100.0f + token + col / 64.0f; }

inline void make_run(const std::string& path, const RunSpec& s) {
  h5::File f = h5::File::create(path);
  f.set_attr("/", "format", s.format);
  f.set_attr("/", "schema_version", 1);
  const auto T = static_cast<std::uint64_t>(s.tokens), H = static_cast<std::uint64_t>(s.hidden),
             K = static_cast<std::uint64_t>(s.top_k);
  for (int r = 0; r < s.ranks; ++r) {
    const std::string g = rank_path(0, r);
    auto edited = [&](const std::string& leaf, std::vector<float> v) {
      if (s.edit)
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = s.edit(leaf, r, i, v[i]);
      return v;
    };
    std::vector<float> final_out(T * H), expert_out(T * K * H), recv(T * H);
    for (std::uint64_t t = 0; t < T; ++t)
      for (std::uint64_t h = 0; h < H; ++h) {
        final_out[t * H + h] = origin(r, t, h);
        recv[t * H + h] = origin((r + 1) % s.ranks, t, h);
        for (std::uint64_t k = 0; k < K; ++k) expert_out[(t * K + k) * H + h] = origin(r, t, h) + 0.25f * k;
      }
    put(f, g + "/final_out", {T, H}, edited("final_out", final_out), "final", "token,hidden", s.dtype);
    put(f, g + "/expert_out", {T, K, H}, edited("expert_out", expert_out), "expert", "token,slot,hidden", s.dtype);
    if (s.format == "moesim-run") {
      put(f, g + "/combine_out", {T, H}, edited("combine_out", final_out), "combine", "token,hidden", s.dtype);
      std::vector<std::int32_t> src_rank(T, (r + 1) % s.ranks), src_token(T), ids(T * K), target(T, -1);
      for (std::uint64_t t = 0; t < T; ++t) {
        src_token[t] = static_cast<std::int32_t>(t);
        for (std::uint64_t k = 0; k < K; ++k) ids[t * K + k] = static_cast<std::int32_t>((r * K + k + t) % s.experts);
      }
      std::vector<float> recv_w(T * K);
      for (std::uint64_t i = 0; i < T * K; ++i) recv_w[i] = 0.5f + static_cast<float>(i) / 64;
      if (s.reverse_rows) {
        auto reverse = [&](auto& v, std::uint64_t width) {
          auto copy = v;
          for (std::uint64_t i = 0; i < T; ++i)
            std::copy_n(&copy[(T - 1 - i) * width], width, &v[i * width]);
        };
        reverse(recv, H);
        reverse(src_token, 1);
        reverse(ids, K);
        reverse(recv_w, K);
      }
      put(f, g + "/dispatch/recv_x", {T, H}, edited("recv_x", recv), "dispatch", "row,hidden", s.dtype);
      put(f, g + "/dispatch/recv_weights", {T, K}, edited("recv_weights", recv_w), "dispatch", "row,slot");
      put_ints(f, g + "/dispatch/src_rank", {T}, src_rank, "dispatch", "row");
      put_ints(f, g + "/dispatch/src_token", {T}, src_token, "dispatch", "row");
      put_ints(f, g + "/dispatch/recv_topk_ids", {T, K}, ids, "dispatch", "row,slot");
      put_ints(f, g + "/dispatch/target_expert", {T}, target, "dispatch", "row");
      f.set_attr(g + "/dispatch", "total_recv", static_cast<std::int64_t>(T));
      if (!s.id_space.empty()) f.set_attr(g + "/dispatch", "id_space", s.id_space);
    }
  }
  f.close();
}

// Routing for make_run's files: token t of rank r uses experts (r + t + k) % E for slot k.
inline void make_routing(const std::string& path, const RunSpec& s) {
  h5::File f = h5::File::create(path);
  f.set_attr("/config", "num_ranks", s.config_ranks >= 0 ? s.config_ranks : std::int64_t{s.ranks});
  f.set_attr("/config", "num_experts", s.experts);
  const auto T = static_cast<std::uint64_t>(s.tokens), K = static_cast<std::uint64_t>(s.top_k);
  for (int r = 0; r < s.ranks; ++r) {
    std::vector<std::int32_t> ids(T * K);
    for (std::uint64_t t = 0; t < T; ++t)
      for (std::uint64_t k = 0; k < K; ++k) ids[t * K + k] = static_cast<std::int32_t>((r + t + k) % s.experts);
    put_ints(f, rank_path(0, r) + "/topk_ids", {T, K}, ids, "input", "token,slot");
  }
  f.close();
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a shell command; returns its exit code, stdout and stderr.
struct Ran {
  int code = -1;
  std::string out, err;
};
inline Ran shell(const std::string& cmd) {
  // Per process and call, so test executables running side by side never share a file.
  static int n = 0;
  const std::string id = std::to_string(::getpid()) + "_" + std::to_string(n++);
  const std::string o = tmp("out" + id), e = tmp("err" + id);
  const int st = std::system((cmd + " >" + o + " 2>" + e).c_str());
  Ran r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(o);
  r.err = slurp(e);
  std::remove(o.c_str());
  std::remove(e.c_str());
  return r;
}
inline Ran run_moesim(const std::string& args) { return shell(std::string(MOESIM_BINARY) + " " + args); }

}  // namespace moesim::test
