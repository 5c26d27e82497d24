#!/usr/bin/env bash
# The test command (README, .ci/run): builds and runs the suite, then builds it again under
# AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/, CPU only: the GPU code is
# checked by compute-sanitizer on a GPU machine) and runs it there: a memory error or undefined
# behaviour anywhere fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOESIM_GPU=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-asan -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$(nproc)" --timeout 1200
