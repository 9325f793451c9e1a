#!/bin/sh
# build_tiny.sh MOEC OUT - the trainer of the tiny example, shared by the tests/train tests.
set -e
"$1" build examples/tiny_qwen3_moe.yaml -o "$2"
test -x "$2/train"
