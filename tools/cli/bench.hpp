#pragma once
// Cases of `moesim bench` that live in their own files.
#include "options.hpp"

namespace moesim::cli {

// Routing-only statistics at scale against a floor pass that only reads every id.
int bench_routing(const po::variables_map& vm);

// The GPU backend against the device's FMA peak and the CPU reference (bench_gpu.cpp).
int bench_gpu(const po::variables_map& vm);

}  // namespace moesim::cli
