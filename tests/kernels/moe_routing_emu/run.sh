#!/bin/sh
# run.sh - checks the MoE routing templates (router_fwd/bwd, moe_count, moe_scan, moe_route,
# moe_capacity, moe_permute/_bwd, moe_combine/_bwd) without a GPU: build.py compiles each
# instance as C++ against the emulator in this folder (cuda_bf16.h, emu.cpp) and its CPU twin
# as C; driver.cpp compares them. Not part of ctest (C++, fibers; a few minutes on 2 cores);
# run by hand after touching one of those templates:
#   tests/kernels/moe_routing_emu/run.sh [name]   (name: only the instances whose name contains it)
set -e
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
B=${TMPDIR:-/tmp}/moe_routing_emu
python3 "$ROOT/tests/kernels/moe_routing_emu/build.py" "$ROOT" "$B"
g++ -std=c++17 -O1 -g -I"$ROOT/tests/kernels/moe_routing_emu" -I"$B" "$ROOT/tests/kernels/moe_routing_emu/driver.cpp" \
	"$B"/*.o -o "$B/driver"
"$B/driver" "$@"
