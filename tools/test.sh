#!/usr/bin/env bash
# The test command (README, .ci/run): builds and runs the suite, then builds it again with clang
# under AddressSanitizer and UndefinedBehaviorSanitizer with the libFuzzer targets
# (build-asan/, CPU only: the GPU code is checked by compute-sanitizer on a GPU machine) and
# runs it there, a short fuzz session of each target included (tests/fuzz/FUZZING.md): a memory
# error, undefined behaviour or fuzz finding anywhere fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOESIM_GPU=OFF -DMOESIM_FUZZ=ON \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined,fuzzer-no-link -fno-omit-frame-pointer -fno-sanitize-recover=all" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-asan -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$(nproc)" --timeout 1200
