#pragma once
// Every GPU runtime call goes through MOESIM_GPU_CHECK: a failure throws moesim::Error naming
// the call as written, the device and file:line, e.g.
//   gpu: hipMalloc(&p, bytes) failed on device 0 (NVIDIA H200): out of memory (gpu/buffer.hpp:24)
#include "vendor.hpp"

namespace moesim::gpu {

[[noreturn]] void fail(hipError_t status, const char* call, const char* file, int line);

inline void check(hipError_t status, const char* call, const char* file, int line) {
  if (status != hipSuccess) fail(status, call, file, line);
}

}  // namespace moesim::gpu

#define MOESIM_GPU_CHECK(call) ::moesim::gpu::check((call), #call, __FILE__, __LINE__)
// After a kernel launch: launch errors (bad configuration) surface here, not at the next call.
#define MOESIM_GPU_CHECK_LAUNCH() MOESIM_GPU_CHECK(hipGetLastError())
