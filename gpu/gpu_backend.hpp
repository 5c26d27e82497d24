#pragma once
// The GPU backend: expert FFNs on one device, bit for bit the CPU reference in every numerics
// mode (reference/NUMERICS.md). The host keeps every routing decision (which rows an expert
// gets comes from the reference or the simulator's dispatch plan); the device holds the layer's
// token rows, gathers each expert's rows, generates or converts its weights and runs the FFN.
// Plain C++: the rest of moesim includes this without a GPU compiler.
#include <memory>
#include <string>

#include "expert_backend.hpp"

namespace moesim::gpu {

struct DeviceInfo {
  int index = 0;
  std::string name;
  std::size_t total_bytes = 0, free_bytes = 0;
  int multiprocessors = 0;
};

// Devices visible to this process (0 when none or no driver); never throws.
int device_count();
// Throws Error naming the device when it cannot be opened.
DeviceInfo device_info(int device);

// `trace` and `weights` must outlive the backend; every rank's x must be loaded.
std::unique_ptr<ExpertBackend> make_gpu_backend(const Trace& trace, const WeightProvider& weights, int device = 0);

}  // namespace moesim::gpu
