// Write then read: every value comes back with the same bits, for every token and weight dtype
// and for the captured side. Payloads encode their origin (layer, rank, token, column).
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>

#include "dtype.hpp"
#include "error.hpp"
#include "quantize.hpp"
#include "test_files.hpp"
#include "trace_io.hpp"

using namespace moesim;
using moesim::test::tmp;

namespace {
// A value representable in `t` that names (a, b, c): small integers and halves are exact in
// every dtype here up to 448 / 240; the fp8 grid is applied after.
float origin_value(int a, int b, int c, DType t) {
  const float v = static_cast<float>(a * 16 + b % 16) + static_cast<float>(c % 4) * 0.25f;
  const float s = (b + c) % 2 ? -v : v;
  if (t == DType::bf16) return round_bf16(s);
  if (is_fp8(t)) return round_fp8(std::min(s, 200.0f), t);
  return s;
}

Trace make_trace(DType token, DType weight, bool with_captured) {
  Trace t;
  TraceConfig& c = t.config;
  c.num_ranks = 2;
  c.num_experts = 4;
  c.top_k = 2;
  c.hidden = 8;
  c.intermediate = 4;
  c.token_dtype = token;
  c.weight_dtype = weight;
  c.scale_block = 4;
  c.num_shared_experts = 1;
  c.shared_intermediate = 2;
  c.routed_scaling_factor = 2.5;
  c.library = "mori";
  c.library_version = "v1.2.3";
  c.mori.max_num_inp_token_per_rank = 5;
  c.mori.kernel_type = "IntraNode";
  c.library_settings["quant_type"] = "fp8_blockwise";
  c.placement = contiguous_placement(4, 2);
  c.placement.kind = PlacementKind::explicit_map;
  c.placement.expert_to_rank = {1, 0, 1, 0};
  t.weight_spec = {42, "normal", 0.5};
  t.command = "moesim gen -o x.h5";
  const std::uint64_t H = 8, K = 2, S = 2;
  for (int l = 0; l < 2; ++l) {
    Layer layer;
    layer.index = l;
    layer.step = 3 + l;
    ExpertWeights w;
    for (int i = 0; i < 4 * 8 * 8; ++i) w.w1.push_back(origin_value(l, i / 8, i, weight));
    for (int i = 0; i < 4 * 8 * 4; ++i) w.w2.push_back(origin_value(l + 2, i / 4, i, weight));
    for (int i = 0; i < 1 * 4 * 8; ++i) w.shared_w1.push_back(origin_value(l + 4, i / 8, i, weight));
    for (int i = 0; i < 1 * 8 * 2; ++i) w.shared_w2.push_back(origin_value(l + 6, i / 2, i, weight));
    layer.weights = w;
    for (int r = 0; r < 2; ++r) {
      RankInput in;
      in.num_tokens = 3 + r;  // ranks differ in token count
      const auto T = static_cast<std::uint64_t>(in.num_tokens);
      for (std::uint64_t i = 0; i < T * H; ++i) in.x.push_back(origin_value(r, int(i / H), int(i % H), token));
      if (is_fp8(token))
        for (std::uint64_t i = 0; i < T * S; ++i) in.x_scales.push_back(0.125f * float(r + 1) + float(i));
      for (std::uint64_t i = 0; i < T * K; ++i) {
        in.topk_ids.push_back(i % 3 == 2 ? -1 : static_cast<std::int32_t>((r + i) % 4));
        in.topk_weights.push_back(0.1f * float(r) + 0.01f * float(i));
      }
      if (with_captured) {
        Captured& cap = in.captured;
        cap.rows = 6;
        cap.total_recv = 4;
        cap.buffer_rows = 6;
        for (int i = 0; i < 6 * 8; ++i) cap.recv_x.push_back(origin_value(r + 8, i / 8, i, token));
        for (int i = 0; i < 6 * 2; ++i) cap.recv_scales.push_back(float(r * 100 + i));
        for (int i = 0; i < 6 * 2; ++i) cap.recv_topk_ids.push_back((r + i) % 5 - 1);
        for (int i = 0; i < 6 * 2; ++i) cap.recv_weights.push_back(0.5f + float(r * 10 + i));
        for (int i = 0; i < 4; ++i) cap.src_token_pos.push_back(std::int64_t(1 - r) * 10 + i);
        cap.src_pos_encoding = "flat";
        cap.expert_rows = 4;
        for (int i = 0; i < 4 * 8; ++i) cap.expert_out.push_back(1.0f / float(3 + i + r));
        for (std::uint64_t i = 0; i < T * H; ++i) cap.combine_out.push_back(float(r) - 1.0f / float(7 + i));
        for (std::uint64_t i = 0; i < T * H; ++i) cap.final_out.push_back(float(r) + 1.0f / float(11 + i));
      }
      layer.ranks.push_back(in);
    }
    t.layers.push_back(layer);
  }
  return t;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

void check_equal(const Trace& a, const Trace& b) {
  const TraceConfig &ca = a.config, &cb = b.config;
  CHECK(cb.num_ranks == ca.num_ranks);
  CHECK(cb.num_experts == ca.num_experts);
  CHECK(cb.top_k == ca.top_k);
  CHECK(cb.hidden == ca.hidden);
  CHECK(cb.intermediate == ca.intermediate);
  CHECK(cb.activation == ca.activation);
  CHECK(cb.token_dtype == ca.token_dtype);
  CHECK(cb.weight_dtype == ca.weight_dtype);
  CHECK(cb.scale_block == ca.scale_block);
  CHECK(cb.num_shared_experts == ca.num_shared_experts);
  CHECK(cb.shared_intermediate == ca.shared_intermediate);
  CHECK(cb.routed_scaling_factor == ca.routed_scaling_factor);
  CHECK(cb.library == ca.library);
  CHECK(cb.library_version == ca.library_version);
  CHECK(cb.mori.max_num_inp_token_per_rank == ca.mori.max_num_inp_token_per_rank);
  CHECK(cb.mori.kernel_type == ca.mori.kernel_type);
  CHECK(cb.library_settings == ca.library_settings);
  CHECK(cb.placement.kind == ca.placement.kind);
  CHECK(cb.placement.expert_to_rank == ca.placement.expert_to_rank);
  CHECK(cb.placement.physical_to_logical == ca.placement.physical_to_logical);
  CHECK(b.weight_spec.seed == a.weight_spec.seed);
  CHECK(b.weight_spec.distribution == a.weight_spec.distribution);
  CHECK(b.weight_spec.scale == a.weight_spec.scale);
  CHECK(b.command == a.command);
  REQUIRE(b.layers.size() == a.layers.size());
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    CAPTURE(l);
    const Layer &la = a.layers[l], &lb = b.layers[l];
    CHECK(lb.step == la.step);
    REQUIRE(lb.weights.has_value());
    CHECK(same_bits(lb.weights->w1, la.weights->w1));
    CHECK(same_bits(lb.weights->w2, la.weights->w2));
    CHECK(same_bits(lb.weights->shared_w1, la.weights->shared_w1));
    CHECK(same_bits(lb.weights->shared_w2, la.weights->shared_w2));
    for (std::size_t r = 0; r < la.ranks.size(); ++r) {
      CAPTURE(r);
      const RankInput &ra = la.ranks[r], &rb = lb.ranks[r];
      CHECK(rb.num_tokens == ra.num_tokens);
      CHECK(same_bits(rb.x, ra.x));
      CHECK(same_bits(rb.x_scales, ra.x_scales));
      CHECK(rb.topk_ids == ra.topk_ids);
      CHECK(same_bits(rb.topk_weights, ra.topk_weights));
      const Captured &pa = ra.captured, &pb = rb.captured;
      CHECK(pb.rows == pa.rows);
      CHECK(pb.total_recv == pa.total_recv);
      CHECK(pb.buffer_rows == pa.buffer_rows);
      CHECK(same_bits(pb.recv_x, pa.recv_x));
      CHECK(same_bits(pb.recv_scales, pa.recv_scales));
      CHECK(pb.recv_topk_ids == pa.recv_topk_ids);
      CHECK(same_bits(pb.recv_weights, pa.recv_weights));
      CHECK(pb.src_token_pos == pa.src_token_pos);
      if (!pa.src_token_pos.empty()) CHECK(pb.src_pos_encoding == pa.src_pos_encoding);
      CHECK(pb.expert_rows == pa.expert_rows);
      CHECK(same_bits(pb.expert_out, pa.expert_out));
      CHECK(same_bits(pb.combine_out, pa.combine_out));
      CHECK(same_bits(pb.final_out, pa.final_out));
    }
  }
}
}  // namespace

TEST_CASE("round trip is exact for every token dtype, weights f32 and bf16, captured side included") {
  for (DType token : {DType::f32, DType::bf16, DType::e4m3, DType::e4m3fnuz})
    for (DType weight : {DType::f32, DType::bf16}) {
      CAPTURE(std::string(name(token)));
      CAPTURE(std::string(name(weight)));
      const Trace t = make_trace(token, weight, true);
      const std::string path = tmp("roundtrip_" + std::string(name(token)) + "_" + std::string(name(weight)) + ".h5");
      write_trace(t, path);
      ReadReport report;
      const Trace back = read_trace(path, {}, &report);
      check_equal(t, back);
      CHECK(back.path == path);
    }
}

TEST_CASE("round trip without a captured side leaves it empty") {
  const Trace t = make_trace(DType::bf16, DType::bf16, false);
  const std::string path = tmp("roundtrip_nocapture.h5");
  write_trace(t, path);
  const Trace back = read_trace(path);
  check_equal(t, back);
  for (const auto& r : back.layers[0].ranks) CHECK(r.captured.empty());
}

TEST_CASE("stored bf16 and fp8 tensors carry their dtype attribute and integer storage") {
  const Trace t = make_trace(DType::e4m3fnuz, DType::bf16, true);
  const std::string path = tmp("roundtrip_storage.h5");
  write_trace(t, path);
  const auto f = h5::File::open_read(path);
  auto x = f.info("/layers/0/ranks/1/x");
  CHECK(x.stored == DType::u8);
  CHECK(x.declared == "float8_e4m3fnuz");
  CHECK(x.dims == std::vector<std::uint64_t>{4, 8});
  auto w1 = f.info("/layers/1/weights/w1");
  CHECK(w1.stored == DType::bf16);  // uint16 patterns
  CHECK(w1.declared == "bfloat16");
  CHECK(w1.dims == std::vector<std::uint64_t>{4, 8, 8});
  CHECK(f.attr_string("/layers/0/ranks/1/x", "axes") == "token,hidden");
  CHECK(f.attr_string("/", "format") == "moesim-trace");
  // The first code of rank 1, token 0 is origin_value(1, 0, 0) = 16 on the fnuz grid: 0x64.
  CHECK(f.read<std::uint8_t>("/layers/0/ranks/1/x")[0] == float_to_fp8_bits(16.0f, DType::e4m3fnuz));
}

TEST_CASE("writing leaves no partial file when it fails") {
  Trace t = make_trace(DType::bf16, DType::bf16, false);
  t.config.token_dtype = DType::i32;  // write_values cannot store int32 values
  const std::string path = tmp("roundtrip_failed.h5");
  std::filesystem::remove(path);
  CHECK_THROWS_AS(write_trace(t, path), Error);
  CHECK_FALSE(std::filesystem::exists(path));
  for (const auto& e : std::filesystem::directory_iterator(MOESIM_TEST_TMP))
    CHECK(e.path().filename().string().find("roundtrip_failed.h5.tmp") == std::string::npos);
}
