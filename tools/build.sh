#!/usr/bin/env bash
# Installs what is missing, then configures and builds moesim in build/ (Release).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
# CUDA's nvcc lives off PATH in its own folder on most machines; CMake's AUTO picks it up here.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ] && [ -z "${CUDACXX:-}" ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
