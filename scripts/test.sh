#!/usr/bin/env bash
# Every test: install what is missing, build with clang + AddressSanitizer +
# UndefinedBehaviorSanitizer + libFuzzer into build/asan, and run the whole ctest suite
# (unit tests, the bad-spec suite, examples and presets, the CLI, a bounded fuzz run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build/asan -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
  -DMOEC_SANITIZE=ON -DMOEC_FUZZ=ON >/dev/null
cmake --build build/asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build/asan --output-on-failure -j"$(nproc)" "$@"
