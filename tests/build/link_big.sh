#!/bin/sh
# link_big.sh MOEC OUT - the whole `moec build` (step generated, trainer linked) of a model
# past 2^31 parameter floats: bench/specs/qwen3_30b_a3b_4layers.yaml, 3.11 B. Its tensor
# table's offsets must not wrap in int arithmetic (the generated Makefile has
# -Werror=overflow), and the trainer checks its table at start (a CPU run of this model
# would need ~60 GB, so the test reads the table through moec's manifest and the source).
moec=$1 out=$2
rm -rf "$out"
"$moec" build bench/specs/qwen3_30b_a3b_4layers.yaml -o "$out" >"$out.log" 2>&1 || {
	tail -20 "$out.log"
	echo "FAIL: moec build of the 3.1 B-parameter spec"
	exit 1
}
[ -x "$out/train" ] || { echo "FAIL: no trainer linked"; exit 1; }
# the offsets past 2^31 are written as long long (a block below 2^31 + an LL delta)
big=$(grep -c 'LL, ' "$out/gen/model.c")
[ "$big" -gt 0 ] || { echo "FAIL: no tensor table rows in gen/model.c"; exit 1; }
grep -q -- '-Werror=overflow' "$out/Makefile" || { echo "FAIL: the Makefile lost -Werror=overflow"; exit 1; }
echo "PASS: $(tail -1 "$out.log")"
