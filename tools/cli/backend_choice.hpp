#pragma once
// --backend cpu | gpu for the commands that run expert FFNs (run, golden, bench gpu).
#include <memory>
#include <optional>
#include <string>

#include "expert_backend.hpp"

namespace moesim::cli {

inline constexpr const char* kBackendHelp =
    "where expert FFNs run: cpu; gpu (bit for bit the CPU in every numerics mode; needs a GPU build); gpu-fast "
    "(the vendor BLAS's GEMMs, bf16 or block-scaled fp8, within the rounding bound, not bitwise: NUMERICS.md, Fast "
    "mode)";
inline constexpr const char* kGoldenBackendHelp =
    "cpu; gpu (bit for bit the CPU in every numerics mode); gpu-fast (the whole layer on the GPU with the vendor "
    "BLAS, bf16 or fp8, within the rounding bound, not bitwise: NUMERICS.md, Fast mode); gpu-atomic (gpu-fast "
    "with combine adding in the hardware's order, as atomics do)";

// "gpu-fast" and "gpu-atomic": the whole layer on the device, not an ExpertBackend.
inline bool is_fast_backend(const std::string& name) { return name == "gpu-fast" || name == "gpu-atomic"; }

// The numerics a command runs with `backend`: `asked` when given, else `fallback`; the fast
// backends compute bf16 and fp8, so with them bf16 is the default and any other mode a UsageError.
Numerics backend_numerics(const std::string& backend, std::optional<Numerics> asked, Numerics fallback);

// nullptr for "cpu" (the callers' default, the reference kernel); "gpu" or "gpu-fast" (the fast
// mode's expert math, gpu/fast_backend.hpp); throws UsageError for an
// unknown name and Error when moesim was built without a GPU backend or no device is present.
// `threads`: the host threads the backend may use for its own host work.
std::unique_ptr<ExpertBackend> make_backend(const std::string& name, const Trace& trace, const WeightProvider& weights,
                                            int threads, int device = 0);

// Whether this build has a GPU backend, and the devices it sees (0 without one).
bool gpu_built();
int gpu_devices();

}  // namespace moesim::cli
