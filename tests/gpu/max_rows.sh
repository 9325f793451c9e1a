#!/bin/sh
# max_rows.sh MAX MOEC CC FLAGS OBJ LIBMOERT OUT SPEC [moec build args...] - kernel_vs_twin's
# --max-rows, without a GPU (ctest gpu/self_check_max_rows): builds as run.sh does (run.sh
# build), then runs the self-check twice with -v, without and with --max-rows MAX, and checks:
#   - both pass, and the capped run's last line counts the cases it did not run (at least one);
#   - case by case, the two listings line up: where the capped run says "not run", the full run
#     has a case of the same kernel; every other case prints the same line and the same output
#     RMS (-v) in both, so the cases left out shift no other case's inputs. Exceptions: the
#     tile-edge cases the cap truncates, and the output RMS of the grouped GEMMs (with the cap,
#     their expert weights are a stand-in; their lines still match: the routing in the shape);
#   - at least one grouped GEMM ran its tile-edge case truncated to the cap.
set -e
if [ $# -lt 8 ]; then
	echo "usage: max_rows.sh MAX MOEC CC FLAGS OBJ LIBMOERT OUT SPEC [moec build args...]" >&2
	exit 2
fi
max=$1
shift
out=$6
sh "$(dirname "$0")/run.sh" build "$@"
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS
rc=0
"$out/kernel_vs_twin" --self-check -v "$out/build" >"$out/full.txt" 2>&1 || rc=$?
"$out/kernel_vs_twin" --self-check -v --max-rows "$max" "$out/build" >"$out/capped.txt" 2>&1 || rc=$?
tail -1 "$out/full.txt"
tail -1 "$out/capped.txt"
if [ $rc -ne 0 ]; then
	grep -h 'FAIL\|ERROR\|runtime error' "$out/full.txt" "$out/capped.txt" | head -20
	echo "max_rows.sh: kernel_vs_twin failed (exit $rc; $out/full.txt, $out/capped.txt)" >&2
	exit 1
fi
grep "not run: over --max-rows $max\$" "$out/capped.txt" | head -5
grep 'sizes for [0-9]* experts: --max-rows' "$out/capped.txt" | head -3

# records: a case line (the kernel's name first, PASS / FAIL / "not run" last) with its -v line
awk -v max="$max" '
function load(file, n, line, t) {
	n = 0
	while ((getline line < file) > 0) {
		if (line ~ /^    / && n > 0) {
			info[file, n] = line
			continue
		}
		if (line ~ /^(PASS|FAIL|SELF-CHECK)/ || line ~ /^\// || !(line ~ / (PASS|FAIL)$/ || line ~ /not run: over --max-rows/))
			continue
		n++
		rec[file, n] = line
		split(line, t, " ")
		kern[file, n] = t[1]
	}
	close(file)
	return n
}
BEGIN {
	full = ARGV[1]; capped = ARGV[2]
	nf = load(full); nc = load(capped)
	bad = 0; skipped = 0; truncated = 0
	if (nf != nc) {
		printf "max_rows.sh: %d cases without the cap, %d with it (ran or not run): they do not line up\n", nf, nc
		exit 1
	}
	for (i = 1; i <= nf; i++) {
		if (kern[full, i] != kern[capped, i]) {
			printf "max_rows.sh: case %d is %s without the cap, %s with it\n", i, kern[full, i], kern[capped, i]
			bad++
			continue
		}
		if (rec[capped, i] ~ /not run: over --max-rows/) {
			skipped++
			continue
		}
		if (rec[capped, i] ~ /sizes for [0-9]+ experts: --max-rows/) {
			truncated++
			continue
		}
		same = rec[full, i] == rec[capped, i]
		if (same && kern[full, i] !~ /^moe_(gate_up|down)_/)
			same = info[full, i] == info[capped, i]
		if (!same) {
			printf "max_rows.sh: case %d differs with the cap:\n  %s\n  %s\n  %s\n  %s\n", i, rec[full, i], info[full, i],
				rec[capped, i], info[capped, i]
			bad++
		}
	}
	if (!skipped) {
		print "max_rows.sh: no case was over --max-rows " max
		bad++
	}
	if (!truncated) {
		print "max_rows.sh: no grouped GEMM ran its tile-edge case truncated to --max-rows " max
		bad++
	}
	printf "max_rows.sh: %d cases line up, %d not run (over --max-rows %d), %d tile-edge cases truncated; %d differences\n",
		nf, skipped, max, truncated, bad
	exit bad ? 1 : 0
}' "$out/full.txt" "$out/capped.txt"
# the last line counts the cases not run
grep -q "^PASS: .*; [1-9][0-9]* cases over --max-rows $max not run" "$out/capped.txt" || {
	echo "max_rows.sh: the capped run's last line does not count the cases it did not run" >&2
	exit 1
}
