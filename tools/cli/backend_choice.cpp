#include "backend_choice.hpp"

#include "command.hpp"
#include "error.hpp"
#ifdef MOESIM_HAVE_GPU
#include "fast_backend.hpp"
#include "gpu_backend.hpp"
#endif

namespace moesim::cli {

Numerics backend_numerics(const std::string& backend, std::optional<Numerics> asked, Numerics fallback) {
  if (!is_fast_backend(backend)) return asked.value_or(fallback);
  if (asked && *asked != Numerics::bf16 && *asked != Numerics::fp8)
    throw UsageError("--backend " + backend + " computes bf16 and fp8, not --numerics " + std::string(name(*asked)));
  return asked.value_or(Numerics::bf16);
}

std::unique_ptr<ExpertBackend> make_backend(const std::string& name, const Trace& trace, const WeightProvider& weights,
                                            int threads, int device) {
  if (name == "cpu") return nullptr;
  if (name == "gpu-atomic")
    throw UsageError("--backend gpu-atomic is golden's whole-layer mode; here combine is the library's model, so "
                     "use gpu-fast for the fast expert math");
  if (name != "gpu" && name != "gpu-fast") throw UsageError("--backend is cpu, gpu or gpu-fast, not '" + name + "'");
#ifdef MOESIM_HAVE_GPU
  if (name == "gpu-fast") return gpu::make_fast_backend(trace, weights, device, threads);
  return gpu::make_gpu_backend(trace, weights, device);
#else
  (void)trace, (void)weights, (void)threads, (void)device;
  throw Error("--backend " + name + ": this moesim was built without a GPU backend (configure with -DMOESIM_GPU=CUDA or HIP)");
#endif
}

bool gpu_built() {
#ifdef MOESIM_HAVE_GPU
  return true;
#else
  return false;
#endif
}

int gpu_devices() {
#ifdef MOESIM_HAVE_GPU
  return gpu::device_count();
#else
  return 0;
#endif
}

}  // namespace moesim::cli
