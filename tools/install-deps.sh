#!/usr/bin/env bash
# Installs the Debian 12 packages moesim builds and tests with; does nothing when all are present.
# hipcc (Debian's ROCm 5.2) compiles the GPU sources for AMD gfx90a beside a CUDA build, so a
# machine with nvcc and no GPU still proves they are real HIP and real CUDA. clang-14 with its
# runtime builds the sanitizer suite and the libFuzzer targets (tools/test.sh); python3-torch
# (1.13, CPU) runs the capture package's torch test (tests/python/test_capture_torch.py);
# OpenBLAS is what `moesim bench reference` compares the CPU GEMM with.
set -euo pipefail
packages=(cmake g++ make libeigen3-dev libboost-program-options-dev libhdf5-dev doctest-dev
          hdf5-tools python3-h5py python3-numpy python3-torch ccache hipcc clang-14 libclang-rt-14-dev
          libopenblas-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
