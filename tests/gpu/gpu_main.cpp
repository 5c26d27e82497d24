// The GPU test runner: doctest, unless this machine has no GPU, which CTest reports as skipped
// (exit 77, SKIP_RETURN_CODE) with the reason printed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "gpu_backend.hpp"

int main(int argc, char** argv) {
  if (moesim::gpu::device_count() == 0) {
    std::puts("no GPU device visible: GPU tests skipped (they run on a machine with one)");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
