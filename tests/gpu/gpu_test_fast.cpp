// The GPU's fast mode (gpu/fast_layer.hpp) against the exact CPU reference: within the bf16
// rounding bound (NUMERICS.md, "Fast mode") on the bundled traces and on generated ones over
// activations, dtypes, stored and seeded weights, shared experts and routed scaling, with sizes
// off the 16-byte paths; its run-to-run changes (none when combine is ordered, some with
// atomics); and its refusals.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "agreement.hpp"
#include "error.hpp"
#include "expert_map.hpp"
#include "fast_backend.hpp"
#include "fast_layer.hpp"
#include "generate.hpp"
#include "gpu_backend.hpp"
#include "gpu_compare.hpp"
#include "pairing.hpp"
#include "run_to_run.hpp"
#include "simulate.hpp"
#include "trace_io.hpp"

namespace {

using namespace moesim;

// Every layer of `trace` in fast mode (ordered and atomic) against the exact reference.
void check_fast(const Trace& trace, const std::string& label) {
  const WeightProvider weights(trace);
  ReferenceOptions exact;
  exact.threads = 2;
  for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) {
    const LayerOutputs ref = run_layer(trace, l, weights, exact);
    for (const auto combine : {gpu::FastCombine::ordered, gpu::FastCombine::atomic}) {
      gpu::FastLayer layer(trace, weights, l, combine);
      layer.run();
      const LayerOutputs got = layer.outputs(true);
      std::vector<sim::RankRun> runs(got.ranks.size());
      for (std::size_t r = 0; r < runs.size(); ++r) runs[r].final_out = got.ranks[r].final_out;
      const sim::Agreement a =
          sim::compare_final(runs, ref, trace, l, Numerics::bf16, Numerics::exact, sim::CombineModel::weighted);
      INFO(label, " layer ", l, " ", gpu::fast_backend_name(combine), ": ", a.verdict());
      CHECK(a.agrees());
      CHECK(a.worst.ratio > 0);  // bf16 rounding happened: the fast mode is not comparing exact with exact
      // Every slot's expert output lands at its (token, slot): a row in the wrong place is far
      // outside the bound, a slot without an expert stays zero.
      for (std::size_t r = 0; r < ref.ranks.size(); ++r) {
        const auto& ids = trace.layers[l].ranks[r].topk_ids;
        const std::size_t H = trace.config.hidden;
        for (std::size_t i = 0; i < ids.size(); ++i) {
          double num = 0, den = 0;
          for (std::size_t c = 0; c < H; ++c) {
            const double d = got.ranks[r].expert_out[i * H + c] - ref.ranks[r].expert_out[i * H + c];
            num += d * d;
            den += ref.ranks[r].expert_out[i * H + c] * ref.ranks[r].expert_out[i * H + c];
          }
          if (ids[i] < 0) {
            CHECK(num == 0);
          } else {
            INFO(label, " rank ", r, " token ", i / trace.config.top_k, " slot ", i % trace.config.top_k);
            CHECK(num <= den * 1e-3);  // bf16 intermediates: relative L2 about 2^-8, not O(1)
          }
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("fast mode: bundled traces within the bf16 rounding bound of exact") {
  for (const char* file : {"default.h5", "seed-ep8.h5"}) {
    const Trace trace = read_trace(std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/" + file);
    check_fast(trace, file);
  }
}

TEST_CASE("fast mode: generated traces within the bf16 rounding bound of exact") {
  struct Variant {
    const char* label;
    Activation act;
    DType token, weight;
    int hidden, inter, shared;
    double scaling;
    bool stored, include_scaling;
  };
  const Variant variants[] = {
      {"silu bf16 seeded, 16-byte rows", Activation::silu_gated, DType::bf16, DType::bf16, 256, 64, 1, 2.5, false,
       false},
      {"gelu-erf f32 stored, odd sizes", Activation::gelu_erf_gated, DType::f32, DType::f32, 196, 70, 2, 1.0, true,
       false},
      {"plain silu, f16 weights", Activation::silu, DType::bf16, DType::f16, 200, 72, 0, 1.0, false, false},
      {"gelu-tanh, e4m3 weights, weights hold the factor", Activation::gelu_tanh_gated, DType::f32, DType::e4m3, 128,
       48, 1, 2.5, false, true},
  };
  std::uint64_t seed = 41;
  for (const Variant& v : variants) {
    GenOptions g = test::odd_sized_layer(seed++);
    g.hidden = v.hidden;
    g.intermediate = v.inter;
    g.activation = v.act;
    g.token_dtype = v.token;
    g.weight_dtype = v.weight == DType::f32 ? DType::f32 : DType::bf16;
    g.num_shared_experts = v.shared;
    g.routed_scaling_factor = v.scaling;
    g.store_weights = v.stored;
    Trace t = generate(g);
    if (!v.stored) t.config.weight_dtype = v.weight;
    t.config.topk_weights_include_scaling = v.include_scaling;
    t.path = std::string("generated ") + v.label;
    check_fast(t, v.label);
  }
}

TEST_CASE("fast backend: every correct pairing, simulated with the fast expert math, within the bf16 bound of exact") {
  // Each pairing hands the experts its own rows (per (token, expert) or per (token, rank), in its
  // own order, shuffled as atomics leave it): the fast backend must compute every one of them.
  std::uint64_t seed = 70;
  for (const sim::DispatchModel d : {sim::DispatchModel::mori, sim::DispatchModel::deepep_ht, sim::DispatchModel::deepep_ll,
                                     sim::DispatchModel::pplx, sim::DispatchModel::pairs}) {
    for (const int shared : {0, 1}) {
      GenOptions g = test::odd_sized_layer(seed++);
      g.hidden = 256;
      g.num_shared_experts = shared;
      g.routed_scaling_factor = shared ? 2.5 : 1.0;
      Trace t = generate(g);
      t.path = "generated " + std::string(sim::name(d));
      const WeightProvider weights(t);
      const auto fast = gpu::make_fast_backend(t, weights);
      sim::SimOptions o;
      o.dispatch.model = d;
      o.dispatch.shuffle = true;
      o.dispatch.shuffle_seed = seed;
      o.consumer.model = sim::default_consumer(d);
      o.combine = sim::default_combine(d, t.config.mori.kernel_type);
      o.numerics = Numerics::bf16;
      o.backend = fast.get();
      const sim::LayerRun run = sim::simulate_layer(t, 0, weights, sim::make_expert_map(t.config), o);
      ReferenceOptions exact;
      exact.threads = 2;
      const LayerOutputs ref = run_layer(t, 0, weights, exact);
      const sim::Agreement a = sim::compare_final(run.ranks, ref, t, 0, Numerics::bf16, Numerics::exact, o.combine);
      INFO(t.path, ", ", shared, " shared: ", a.verdict());
      CHECK(a.agrees());
      CHECK(a.worst.ratio > 0);
      CHECK(fast->profile().find(" 0 rows") == std::string::npos);  // the rows ran on the device
    }
  }
  // Other modes are refused before any work, naming the trace.
  Trace t = generate(test::small_layer());
  t.path = "t.h5";
  const WeightProvider weights(t);
  const auto fast = gpu::make_fast_backend(t, weights);
  sim::SimOptions o;
  o.numerics = Numerics::fp32;
  o.backend = fast.get();
  CHECK_THROWS_WITH_AS(sim::simulate_layer(t, 0, weights, sim::make_expert_map(t.config), o),
                       "t.h5: gpu fast backend computes numerics bf16 and fp8, not fp32; use --backend gpu (bit for "
                       "bit the CPU) for other modes",
                       Error);
}

TEST_CASE("fast mode fp8: the block-scaled fp8 GEMM1 within the fp8 bound of exact, and near the CPU's fp8 mode") {
  // Per-slot expert outputs against the CPU's fp8 mode (the same quantized rows, sums in another
  // order): a scale applied to the wrong block or row is an O(1) error there, not 1e-2.
  std::uint64_t seed = 90;
  for (const int hidden : {256, 384}) {
    GenOptions g = test::odd_sized_layer(seed++);
    g.hidden = hidden;
    g.num_shared_experts = 1;
    g.routed_scaling_factor = 2.5;
    Trace t = generate(g);
    t.config.weight_dtype = DType::e4m3;  // seeded weights, rounded to e4m3 by the generator
    t.path = "generated fp8, H " + std::to_string(hidden);
    const WeightProvider weights(t);
    ReferenceOptions exact, cpu_fp8;
    exact.threads = cpu_fp8.threads = 2;
    cpu_fp8.numerics = Numerics::fp8;
    const LayerOutputs ref = run_layer(t, 0, weights, exact), contract = run_layer(t, 0, weights, cpu_fp8);
    gpu::FastLayer layer(t, weights, 0, gpu::FastCombine::ordered, 0, Numerics::fp8);
    layer.run();
    const LayerOutputs got = layer.outputs(true);
    std::vector<sim::RankRun> runs(got.ranks.size());
    for (std::size_t r = 0; r < runs.size(); ++r) runs[r].final_out = got.ranks[r].final_out;
    const sim::Agreement a = sim::compare_final(runs, ref, t, 0, Numerics::fp8, Numerics::exact, sim::CombineModel::weighted);
    INFO(t.path, ": ", a.verdict());
    CHECK(a.agrees());
    CHECK(a.worst.ratio > 0);
    double worst = 0;
    for (std::size_t r = 0; r < got.ranks.size(); ++r) {
      const auto& ids = t.layers[0].ranks[r].topk_ids;
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0) continue;
        double num = 0, den = 0;
        for (int c = 0; c < hidden; ++c) {
          const double d = got.ranks[r].expert_out[i * hidden + c] - contract.ranks[r].expert_out[i * hidden + c];
          num += d * d;
          den += contract.ranks[r].expert_out[i * hidden + c] * contract.ranks[r].expert_out[i * hidden + c];
        }
        worst = std::max(worst, std::sqrt(num / std::max(den, 1e-300)));
      }
    }
    INFO("worst relative L2 of a slot's expert output against the CPU's fp8 mode: ", worst);
    CHECK(worst < 1e-2);
    // The fast backend in a simulated pairing computes the same rows.
    const auto fast = gpu::make_fast_backend(t, weights);
    sim::SimOptions o;
    o.dispatch.model = sim::DispatchModel::deepep_ll;
    o.consumer.model = sim::default_consumer(o.dispatch.model);
    o.combine = sim::default_combine(o.dispatch.model, t.config.mori.kernel_type);
    o.numerics = Numerics::fp8;
    o.backend = fast.get();
    const sim::LayerRun run = sim::simulate_layer(t, 0, weights, sim::make_expert_map(t.config), o);
    const sim::Agreement b = sim::compare_final(run.ranks, ref, t, 0, Numerics::fp8, Numerics::exact, o.combine);
    INFO("deepep-ll with the fast backend: ", b.verdict());
    CHECK(b.agrees());
  }
  // What the fp8 GEMM cannot multiply is refused, naming it.
  Trace t = generate(test::small_layer());
  t.path = "t.h5";
  const WeightProvider weights(t);
  CHECK_THROWS_WITH_AS(gpu::FastLayer(t, weights, 0, gpu::FastCombine::ordered, 0, Numerics::fp8),
                       "t.h5: gpu fast mode, fp8: hidden 64, not a multiple of 128; use --numerics bf16, or the "
                       "deterministic GPU backend (--backend gpu)",
                       Error);
  GenOptions g = test::small_layer();
  g.hidden = 128;
  Trace b = generate(g);
  b.path = "b.h5";
  const WeightProvider bw(b);
  CHECK_THROWS_WITH_AS(gpu::FastLayer(b, bw, 0, gpu::FastCombine::ordered, 0, Numerics::fp8),
                       "b.h5: gpu fast mode, fp8: bfloat16 weights (the fp8 GEMM multiplies e4m3 weights); use --numerics "
                       "bf16, or the deterministic GPU backend (--backend gpu)",
                       Error);
}

TEST_CASE("run to run: ordered fast mode and the deterministic backend never change, atomic combine does") {
  GenOptions g;
  g.seed = 5;
  g.num_ranks = 4;
  g.num_experts = 16;
  g.top_k = 8;
  g.hidden = 1024;
  g.intermediate = 64;
  g.tokens_per_rank = 1024;
  const Trace t = generate(g);
  const WeightProvider weights(t);
  RunToRun ordered, atomic;
  for (const auto combine : {gpu::FastCombine::ordered, gpu::FastCombine::atomic}) {
    gpu::FastLayer layer(t, weights, 0, combine);
    layer.run();
    const LayerOutputs first = layer.outputs(false);
    for (int i = 0; i < 6; ++i) {
      layer.run();
      (combine == gpu::FastCombine::ordered ? ordered : atomic).add(first, layer.outputs(false), Numerics::bf16);
    }
  }
  INFO("ordered: ", ordered.text(), "; atomic: ", atomic.text());
  CHECK(ordered.elements == 6 * 4096 * 1024);
  CHECK(ordered.changed == 0);
  CHECK(atomic.changed > 0);
  CHECK(atomic.max_ulps >= 1);
  // The order of K float additions, then one bf16 rounding: a bf16 step of the output's scale at
  // most, not what a wrong slot or weight gives.
  CHECK(atomic.max_abs <= atomic.max_value / 128);
  CHECK(atomic.max_value > 0);

  GenOptions small = g;
  small.tokens_per_rank = 64;
  const Trace s = generate(small);
  const WeightProvider sw(s);
  const auto backend = gpu::make_gpu_backend(s, sw);
  ReferenceOptions o;
  o.numerics = Numerics::bf16;
  o.backend = backend.get();
  const LayerOutputs a = run_layer(s, 0, sw, o);
  RunToRun det;
  for (int i = 0; i < 3; ++i) det.add(a, run_layer(s, 0, sw, o), Numerics::bf16);
  CHECK(det.elements == 3 * 4 * 64 * 1024);
  CHECK(det.changed == 0);
}

TEST_CASE("fast mode refuses what it does not compute, naming it, before any work") {
  Trace t = generate(test::small_layer());
  t.path = "t.h5";
  const WeightProvider weights(t);
  t.config.router_weight_on_input = true;
  CHECK_THROWS_WITH_AS(gpu::FastLayer(t, weights, 0, gpu::FastCombine::ordered),
                       "t.h5: gpu fast mode: the router weight on the input not in the fast mode yet; use the "
                       "deterministic GPU backend (--backend gpu)",
                       Error);
  t.config.router_weight_on_input = false;
  t.config.token_dtype = DType::e4m3;
  CHECK_THROWS_WITH_AS(gpu::FastLayer(t, weights, 0, gpu::FastCombine::atomic),
                       "t.h5: gpu fast mode: fp8 tokens not in the fast mode yet; use the deterministic GPU backend "
                       "(--backend gpu)",
                       Error);
}

TEST_CASE("moesim golden --backend gpu-atomic --repeat: a file diff accepts against exact, and the run-to-run line") {
  const std::string bin = MOESIM_BINARY, tmp = MOESIM_TEST_TMP;
  if (bin.empty()) return;  // the command is not part of this build
  const std::string trace = std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/default.h5";
  const std::string exact = tmp + "/fast-exact.h5", fast = tmp + "/fast-atomic.h5", log = tmp + "/fast-atomic.txt";
  REQUIRE(std::system((bin + " golden " + trace + " -o " + exact + " > /dev/null").c_str()) == 0);
  REQUIRE(std::system((bin + " golden " + trace + " -o " + fast + " --backend gpu-atomic --repeat 3 > " + log).c_str()) ==
          0);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("layer 0, 3 runs: ") != std::string::npos);
  CHECK(text.find("(bf16, gpu-atomic)") != std::string::npos);
  CHECK(std::system((bin + " diff " + fast + " " + exact + " > /dev/null").c_str()) == 0);
  // Asking the fast mode for another precision is a usage error, and nothing is written.
  const std::string refused = tmp + "/fast-fp32.h5";
  std::remove(refused.c_str());
  CHECK(WEXITSTATUS(std::system((bin + " golden " + trace + " -o " + refused + " --backend gpu-fast --numerics fp32 2> /dev/null").c_str())) == 2);
  CHECK_FALSE(std::ifstream(refused).good());
  // run with the fast expert math: bf16 by default, judged by the bound, exit 0; atomic is golden's.
  CHECK(std::system((bin + " run " + trace + " --backend gpu-fast > " + log).c_str()) == 0);
  std::ifstream run_log(log);
  const std::string run_text((std::istreambuf_iterator<char>(run_log)), std::istreambuf_iterator<char>());
  CHECK(run_text.find("final output vs reference (bf16): matches") != std::string::npos);
  CHECK(run_text.find("gpu fast backend: ") != std::string::npos);
  CHECK(WEXITSTATUS(std::system((bin + " run " + trace + " --backend gpu-atomic 2> /dev/null").c_str())) == 2);
  CHECK(WEXITSTATUS(std::system((bin + " run " + trace + " --backend gpu-fast --numerics fp32 2> /dev/null").c_str())) == 2);
}
