// Determinism: a row's expert output does not depend on the block it runs in, and the layer's
// outputs are the same bits for any thread count and across runs.
#include <doctest/doctest.h>

#include <cstring>
#include <numeric>

#include "quantize.hpp"
#include "ref_fixtures.hpp"

using namespace moesim;
using namespace moesim::testing;

namespace {

template <class T>
std::vector<T> run_rows(const PreparedExpert& e, const ExpertOptions& o, const std::vector<float>& x,
                        const std::vector<float>& sc, const std::vector<float>& w, const std::vector<int>& pick) {
  const int H = e.hidden(), nb = (H + o.scale_block - 1) / o.scale_block;
  std::vector<float> gx, gs, gw;
  for (int r : pick) {
    gx.insert(gx.end(), x.begin() + std::size_t(r) * H, x.begin() + std::size_t(r + 1) * H);
    if (!sc.empty()) gs.insert(gs.end(), sc.begin() + std::size_t(r) * nb, sc.begin() + std::size_t(r + 1) * nb);
    gw.push_back(w[r]);
  }
  TokenRows tr;
  tr.x = gx.data();
  tr.scales = sc.empty() ? nullptr : gs.data();
  tr.input_weights = gw.data();
  tr.rows = static_cast<std::int64_t>(pick.size());
  std::vector<T> y(gx.size());
  run_expert(e, tr, o, y.data());
  return y;
}

template <class T>
void check_batch_independence(Numerics n, DType token_dtype) {
  // Depth 300 spans two 256-wide chunks; 300 rows span several row blocks and chunks.
  const int H = 300, I = 40, rows = 300;
  ExpertMatrices m;
  m.hidden = H, m.inter = I, m.gated = true;
  m.w1.resize(std::size_t(2) * I * H), m.w2.resize(std::size_t(H) * I);
  GeneratorSpec spec;
  fill_generated(m.w1.data(), m.w1.size(), spec, 1, 0.06, DType::f32);
  fill_generated(m.w2.data(), m.w2.size(), spec, 2, 0.15, DType::f32);
  const PreparedExpert e(m, Activation::silu_gated, n);
  ExpertOptions o;
  o.numerics = n;
  o.token_dtype = token_dtype;
  std::vector<float> x(std::size_t(rows) * H), sc, w(rows);
  fill_generated(x.data(), x.size(), spec, 3, 1.0, DType::f32);
  for (int r = 0; r < rows; ++r) w[r] = 0.25f + 0.001f * r;
  if (is_fp8(token_dtype)) {
    sc.resize(std::size_t(rows) * ((H + 127) / 128));
    quantize_blocks(x.data(), rows, H, 128, token_dtype, x.data(), sc.data());
  }
  std::vector<int> all(rows);
  std::iota(all.begin(), all.end(), 0);
  const auto together = run_rows<T>(e, o, x, sc, w, all);
  // Each row alone, and the rows reversed in blocks of 7, must give the same bits.
  for (int r : {0, 1, 2, 3, 4, 5, 127, 128, 131, 255, 256, 299}) {
    const auto alone = run_rows<T>(e, o, x, sc, w, {r});
    REQUIRE(std::memcmp(alone.data(), together.data() + std::size_t(r) * H, H * sizeof(T)) == 0);
  }
  std::vector<int> reversed(all.rbegin(), all.rend());
  for (std::size_t b = 0; b < reversed.size(); b += 7) {
    std::vector<int> block(reversed.begin() + b, reversed.begin() + std::min(reversed.size(), b + 7));
    const auto y = run_rows<T>(e, o, x, sc, w, block);
    for (std::size_t j = 0; j < block.size(); ++j)
      REQUIRE(std::memcmp(y.data() + j * H, together.data() + std::size_t(block[j]) * H, H * sizeof(T)) == 0);
  }
}

bool same_bits(const Values& a, const Values& b) {
  if (a.wide != b.wide || a.size() != b.size()) return false;
  return a.wide ? std::memcmp(a.f64.data(), b.f64.data(), a.f64.size() * 8) == 0
                : std::memcmp(a.f32.data(), b.f32.data(), a.f32.size() * 4) == 0;
}

}  // namespace

TEST_CASE("an expert's output for a row is bitwise independent of the rows around it") {
  check_batch_independence<double>(Numerics::exact, DType::f32);
  check_batch_independence<float>(Numerics::fp32, DType::f32);
  check_batch_independence<float>(Numerics::bf16, DType::bf16);
  check_batch_independence<float>(Numerics::fp8, DType::f32);
  check_batch_independence<float>(Numerics::fp8, DType::e4m3fnuz);
}

TEST_CASE("layer outputs are the same bits for 1, 2 and 3 threads and across runs") {
  TraceShape s;
  s.shared = 1, s.scaling = 2.5, s.tokens = 20, s.stored_weights = false;
  const Trace t = make_trace(s);
  for (Numerics n : {Numerics::exact, Numerics::fp32, Numerics::bf16, Numerics::fp8}) {
    CAPTURE(name(n));
    ReferenceOptions o;
    o.numerics = n;
    const auto base = run_reference(t, o);
    for (int threads : {1, 2, 3}) {
      o.threads = threads;
      const auto again = run_reference(t, o);
      for (int r = 0; r < s.ranks; ++r) {
        CHECK(same_bits(again[0].ranks[r].final_out, base[0].ranks[r].final_out));
        CHECK(same_bits(again[0].ranks[r].expert_out, base[0].ranks[r].expert_out));
      }
    }
  }
}

TEST_CASE("reused prepared experts and workspaces give the bits of fresh ones") {
  TraceShape s;
  s.hidden = 270, s.inter = 30;
  const Trace t = make_trace(s);
  const WeightProvider wp(t);
  const RankInput& in = t.layers[0].ranks[1];
  const ExpertOptions o = expert_options(t.config, {.numerics = Numerics::bf16});
  TokenRows all;
  all.x = in.x.data();
  all.rows = in.num_tokens;
  TokenRows two = all;
  two.rows = 2;
  std::vector<float> fresh(in.x.size()), reused(in.x.size());
  run_expert(PreparedExpert(wp.routed(0, 3), s.act, Numerics::bf16), two, o, fresh.data());
  ExpertMatrices m;
  PreparedExpert p;
  ExpertWorkspace ws;
  wp.routed(0, 5, m);
  p.assign(m, s.act, Numerics::bf16);
  run_expert(p, all, o, reused.data(), &ws);  // grows the workspace, fills it with expert 5's rows
  wp.routed(0, 3, m);
  p.assign(m, s.act, Numerics::bf16);
  run_expert(p, two, o, reused.data(), &ws);
  CHECK(std::memcmp(fresh.data(), reused.data(), 2 * s.hidden * sizeof(float)) == 0);
}

TEST_CASE("an expert with more rows than one gather pass still matches the naive loops") {
  TraceShape s;
  s.hidden = 8, s.inter = 4, s.tokens = 700, s.top_k = 2, s.shared = 1;
  Trace t = make_trace(s);
  for (auto& r : t.layers[0].ranks)
    for (std::size_t i = 0; i < r.topk_ids.size(); i += 2) r.topk_ids[i] = 3;  // 1401 rows for expert 3
  ReferenceOptions o;
  o.numerics = Numerics::fp32;
  o.threads = 2;
  const auto out = run_reference(t, o);
  for (int r = 0; r < s.ranks; ++r) {
    const auto want = naive_final<float>(t, r, false);
    CHECK(std::memcmp(out[0].ranks[r].final_out.f32.data(), want.data(), want.size() * sizeof(float)) == 0);
  }
}
