#include "backend_choice.hpp"

#include "command.hpp"
#include "error.hpp"
#ifdef MOESIM_HAVE_GPU
#include "gpu_backend.hpp"
#endif

namespace moesim::cli {

std::unique_ptr<ExpertBackend> make_backend(const std::string& name, const Trace& trace, const WeightProvider& weights,
                                            int device) {
  if (name == "cpu") return nullptr;
  if (name != "gpu") throw UsageError("--backend is cpu or gpu, not '" + name + "'");
#ifdef MOESIM_HAVE_GPU
  return gpu::make_gpu_backend(trace, weights, device);
#else
  (void)trace, (void)weights, (void)device;
  throw Error("--backend gpu: this moesim was built without a GPU backend (configure with -DMOESIM_GPU=CUDA or HIP)");
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
