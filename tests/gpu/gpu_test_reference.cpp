// The reference's layer on the GPU backend against the CPU kernel, bit for bit: bundled traces
// and generated ones over every activation, token and weight dtype, distribution, shared
// experts, routed scaling and router weight on the input, in every numerics mode.
#include <string>
#include <vector>

#include "error.hpp"
#include "generate.hpp"
#include "gpu_backend.hpp"
#include "gpu_compare.hpp"
#include "trace_io.hpp"

namespace {

using namespace moesim;

const Numerics kModes[] = {Numerics::exact, Numerics::fp32, Numerics::bf16, Numerics::fp8};

// Every layer and rank of `trace` in mode n: CPU against GPU.
void check_trace(const Trace& trace, Numerics n, const std::string& label, DType fp8 = DType::e4m3) {
  const WeightProvider weights(trace);
  const auto gpu = gpu::make_gpu_backend(trace, weights);
  ReferenceOptions cpu_opts;
  cpu_opts.numerics = n;
  cpu_opts.fp8_format = fp8;
  cpu_opts.threads = 2;
  ReferenceOptions gpu_opts = cpu_opts;
  gpu_opts.backend = gpu.get();
  const std::size_t H = trace.config.hidden, K = trace.config.top_k;
  for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) {
    const LayerOutputs a = run_layer(trace, l, weights, cpu_opts);
    const LayerOutputs b = run_layer(trace, l, weights, gpu_opts);
    for (std::size_t r = 0; r < a.ranks.size(); ++r) {
      const std::string where = label + " " + std::string(name(n)) + " layer " + std::to_string(l) + " rank " +
                                std::to_string(r);
      CHECK_SAME_BITS(a.ranks[r].expert_out, b.ranks[r].expert_out, K * H, where + " expert_out");
      CHECK_SAME_BITS(a.ranks[r].final_out, b.ranks[r].final_out, H, where + " final_out");
    }
  }
}

}  // namespace

TEST_CASE("bundled traces: every numerics mode gives the CPU's bits on the GPU") {
  for (const char* file : {"default.h5", "seed-ep8.h5"}) {
    const Trace trace = read_trace(std::string(MOESIM_SOURCE_DIR) + "/traces/bundled/" + file);
    for (Numerics n : kModes) check_trace(trace, n, file);
  }
}

TEST_CASE("generated traces: activations, dtypes, distributions, shared experts, scaling, weight on input") {
  struct Variant {
    const char* label;
    Activation act;
    DType token, weight;
    const char* distribution;
    int shared;
    double scaling;
    bool on_input, stored;
  };
  // Sizes off every tile and scale block: H = 200 (blocks of 128 and 72), I = 72.
  const Variant variants[] = {
      {"silu bf16 seeded", Activation::silu_gated, DType::bf16, DType::bf16, "uniform", 1, 2.5, false, false},
      {"gelu-erf f32 normal", Activation::gelu_erf_gated, DType::f32, DType::f32, "normal", 0, 1.0, false, false},
      {"gelu-tanh fp8 tokens", Activation::gelu_tanh_gated, DType::e4m3, DType::bf16, "normal", 2, 1.0, false, true},
      {"plain silu fnuz, weight on input", Activation::silu, DType::e4m3fnuz, DType::f16, "uniform", 1, 1.0, true,
       false},
      {"plain gelu-erf f16 weights", Activation::gelu_erf, DType::bf16, DType::f16, "normal", 0, 2.5, true, false},
      {"plain gelu-tanh fp8 weights", Activation::gelu_tanh, DType::f32, DType::e4m3, "uniform", 1, 1.0, false, false},
  };
  std::uint64_t seed = 11;
  for (const Variant& v : variants) {
    GenOptions g = test::odd_sized_layer(seed++);
    g.activation = v.act;
    g.token_dtype = v.token;
    g.weight_dtype = v.weight == DType::f32 ? DType::f32 : DType::bf16;  // what gen stores
    g.num_shared_experts = v.shared;
    g.routed_scaling_factor = v.scaling;
    g.store_weights = v.stored;
    g.weight_spec.distribution = v.distribution;
    g.weight_spec.scale = 1.0;
    Trace t = generate(g);
    t.config.router_weight_on_input = v.on_input;
    if (!v.stored) t.config.weight_dtype = v.weight;  // seeded weights are rounded to it when made
    t.path = std::string("generated ") + v.label;
    for (Numerics n : kModes) check_trace(t, n, v.label, n == Numerics::fp8 ? DType::e4m3fnuz : DType::e4m3);
  }
}


TEST_CASE("a row outside the layer is refused with a message, not read") {
  const Trace t = generate(test::small_layer());
  const WeightProvider weights(t);
  const auto gpu = gpu::make_gpu_backend(t, weights);
  const TokenRef rows[] = {{1, 4}, {1, 5}};  // rank 1 has tokens 0..4
  ExpertTask task;
  task.options.numerics = Numerics::fp32;
  task.options.token_dtype = t.config.token_dtype;
  task.rows = rows;
  task.num_rows = 2;
  std::vector<float> out(2 * 64);
  CHECK_THROWS_WITH_AS(gpu->run(task, out.data(), 0), "gpu backend: expert row names a token out of range", Error);
  CHECK_THROWS_WITH_AS(gpu->run(task, static_cast<double*>(nullptr), 0),
                       "gpu backend: output type does not match numerics fp32", Error);
}

TEST_CASE("expert biases and swiglu_oai are refused on the GPU before any work, naming the feature") {
  Trace t = generate(test::small_layer());
  t.path = "t.h5";
  t.config.activation = Activation::swiglu_oai;
  const WeightProvider weights(t);
  CHECK_THROWS_WITH_AS(gpu::make_gpu_backend(t, weights),
                       "t.h5: gpu backend: activation swiglu_oai_and_mul not supported on the GPU yet; run with "
                       "--backend cpu",
                       Error);
  t.config.activation = Activation::silu_gated;
  t.config.expert_bias = true;
  CHECK_THROWS_WITH_AS(gpu::make_gpu_backend(t, weights),
                       "t.h5: gpu backend: expert biases (expert_bias = 1) not supported on the GPU yet; run with "
                       "--backend cpu",
                       Error);
}
