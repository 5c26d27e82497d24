#include "check.hpp"

#include <cstring>
#include <string>

#include "error.hpp"

namespace moesim::gpu {

void fail(hipError_t status, const char* call, const char* file, int line) {
  int device = -1;
  std::string device_name;
  // Best effort: the device may be the thing that failed.
  if (hipGetDevice(&device) == hipSuccess) {
    hipDeviceProp_t prop;
    if (hipGetDeviceProperties(&prop, device) == hipSuccess) device_name = std::string(" (") + prop.name + ")";
  }
  (void)hipGetLastError();  // clear a sticky launch error so the next call reports its own
  const char* base = std::strstr(file, "gpu/");
  throw Error("gpu: " + std::string(call) + " failed on device " + std::to_string(device) + device_name + ": " +
              hipGetErrorString(status) + " (" + (base ? base : file) + ":" + std::to_string(line) + ")");
}

}  // namespace moesim::gpu
