#!/bin/sh
# build_tiny.sh MOEC OUT - the trainer of the tiny example, shared by the tests/train tests;
# its arenas within moec plan's estimate.
. "$(dirname "$0")/lib.sh"
"$1" build examples/tiny_qwen3_moe.yaml -o "$2" 2>"$2.build.log" || fail "moec build: $(tail -3 "$2.build.log")"
within_plan "$2.build.log"
test -x "$2/train" || fail "no $2/train"
