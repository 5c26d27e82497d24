#include "inputs.hpp"

#include <algorithm>
#include <thread>

#include "quantize.hpp"
#include "random.hpp"

namespace moesim {

void generate_inputs(const TraceConfig& config, const GeneratorSpec& spec, int layer, int rank, RankInput& out) {
  const std::size_t n = static_cast<std::size_t>(out.num_tokens) * config.hidden;
  const auto stream = stream_of(spec.seed, {static_cast<std::uint64_t>(TensorKind::x),
                                            static_cast<std::uint64_t>(layer), static_cast<std::uint64_t>(rank)});
  out.x.resize(n);
  const bool fp8 = is_fp8(config.token_dtype);
  // A rank's tokens are generated alone (trace reading, moesim gen): every core takes a share.
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  fill_generated(out.x.data(), n, spec, stream, spec.scale, fp8 ? DType::f32 : config.token_dtype, threads);
  out.x_scales.clear();
  if (fp8) {
    out.x_scales.resize(static_cast<std::size_t>(out.num_tokens) * config.scales_per_token());
    quantize_blocks(out.x.data(), out.num_tokens, config.hidden, config.scale_block, config.token_dtype,
                    out.x.data(), out.x_scales.data());
  }
}

}  // namespace moesim
