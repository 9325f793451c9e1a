#!/usr/bin/env bash
# gpu_session.sh KIT [PART...] - the GPU checks and benchmarks, run on a GPU machine from the
# repository root with a kit scripts/gpu_kit.sh built elsewhere (no moec, CMake, OpenBLAS or
# MPI needed here: the kit holds linked programs and their shared libraries).
#
#   PART   tests   the ctest gpu label's checks, from the kit's programs (about 3-5 min on an
#                  H100, estimated): gpu/device_smoke, gpu/nccl_one_rank, gpu/nccl_ranks (skipped
#                  with one GPU), train/gpu_vs_cpu, train/gpu_bf16, golden/a_gpu, golden/b_gpu,
#                  train/resume on the GPU, gpu/kernels_{f32,bf16,capacity,capacity_late,ep} (the
#                  tiny spec's shapes, as ctest; seeds KVT_SEEDS, default "default 1 2"),
#                  gpu/kernels_qwen30b (every kernel at Qwen3-30B-A3B's shapes, bf16: the default
#                  seed, kernel_vs_twin --max-rows KVT30_MAX_ROWS, default 1000; about 1-2 min,
#                  estimated: its self-check takes 127 s on 2 cores), compute-sanitizer
#                  memcheck of kernels_f32 and _bf16 where it is installed, and last (a kit
#                  for sm_90a) the other GEMM engine: gpu/kernels_bf16_sm90 (the tiny bf16 build
#                  for plain sm_90, whose expert GEMMs run on mma.sync instead of wgmma) and
#                  gpu/kernels_qwen30b_sm90 (its six expert GEMMs at the real shapes, --only _i768)
#          quick   tests' checks at the tiny shapes only, one seed: device, gpu_vs_cpu, bf16,
#                  golden, resume, gpu/kernels_* (about 1 min: a correctness pass before
#                  benchmarks when device time is short; tests took 284 s on an H100)
#          model   bench/moe_gpu.sh's 4-layer model vs transformers (about 2 min, estimated)
#          layer   bench/moe_gpu.sh's MoE layer at T = 4k..32k vs torch._grouped_mm and
#                  transformers' sparse block (about 5-7 min, estimated: each trainer start
#                  spends most of a minute on the host initializing 3.1 B parameters); then the
#                  kit's bench/mma_bT trainers (sm_90: mma.sync expert GEMMs; T 32768, balanced)
#                  with "engines T=... : wgmma X vs mma.sync Y TFLOP/s, wgmma / mma.sync = R"
#          bench   layer then model;  all   tests, layer, model (default: tests)
#          tune    the six expert GEMMs timed alone (kernel_vs_twin --time: T = 4096 and 32768
#                  tokens x top-8 rows, balanced and skewed routing, the median of 20 launches;
#                  also moe_permute, moe_combine and their backward, in GB/s)
#                  in each tile variant of the kit (TUNE_VARIANTS, default: qwen30b = wgmma
#                  STAGES 3, qwen30b_st4 = wgmma STAGES 4, qwen30b_persist(_st4) = wgmma
#                  PERSIST 132 (persistent CTAs, next tile's prologue during the epilogue:
#                  kernels/moe_gemm.cuh) at 3 (4) stages, qwen30b_sm90 = mma.sync,
#                  qwen30b_sm90_tn128 = mma.sync TILE_N 128; scripts/gpu_kit.sh builds them),
#                  then a table kernel x case x variant (ms, TFLOP/s) and the best variant per
#                  kernel; OUT/tune.txt (bench/results style header), OUT/tune.log. TUNE_ARGS
#                  adds kernel_vs_twin arguments (--iters N, --only moe_down, --case T=32768).
#                  The persistent variants' six expert GEMMs are first checked against their
#                  twins at the real shapes (gpu/kernels_qwen30b_persist*, --max-rows, ~1 min each).
#                  About 40-70 s per variant, 4-7 min in all (estimated: the launches take
#                  under 1 s per case; the host's part, filling and uploading up to 3 GiB per
#                  case, took 2.5-4.5 s per case on 2 cores under tests/emu's emulator)
#          profile Nsight Compute (ncu) on the six expert GEMMs (and the four copies) as `tune`
#                  runs them, one case (PROFILE_CASE, default "T=32768 balanced") of one variant
#                  (PROFILE_VARIANT, default qwen30b), a warm-up and 2 launches each: per kernel its time, SM and
#                  memory throughput (% of peak) and tensor-pipe use; OUT/ncu_moe.csv, the
#                  table in gpu_tests.txt (about 1-2 min, estimated; SKIP where ncu is missing).
#                  (It ran on the 3.1 B-parameter bench trainer before: ncu sat 300 s in its
#                  start without profiling a kernel.)
#
# GPU_SESSION_TOKENS: the benchmark trainers' T (default the kit's, KIT_TOKENS); with
# MOE_GPU_ROUTES / MOE_GPU_MMA_ROUTES (bench/moe_gpu.sh) it fits layer and model into a
# short call, e.g. GPU_SESSION_TOKENS=32768 MOE_GPU_ROUTES=balanced MOE_GPU_MMA_ROUTES= ... layer.
# Two 10-minute calls: `tests model`, then `layer`; tuning: `tune profile` in one call.
# Everything in one call shares a time budget (GPU_SESSION_BUDGET_S, default 540 s): a check
# that would start after it is reported SKIP, and timeouts end by then, so the call ends
# inside 10 minutes with its results.
#
# Prints one line per check, PASS / FAIL / SKIP / TIMEOUT, with its measured numbers, and
# writes under OUT (default build/gpu_session): gpu_tests.txt (the lines, with a bench/results
# style header: device, date, commit, command), gpu_tests.log (every check's full output),
# moe_gpu.txt (the benchmark report, in bench/results style), moe_gpu.log. Exit 0 when
# nothing failed: without a GPU every check is reported "SKIP ... no GPU" and the exit is 0.
# GPU_SESSION_FORCE=1 runs the checks even so (to exercise this script without a GPU).
set -uo pipefail
check_fn=
if [ "${1:-}" = _check ]; then # internal: one check, in its own process under a timeout
	shift
	check_fn=$1
	shift
fi
cd "$(dirname "$0")/.." || exit 2
root=$PWD

usage() {
	echo "usage: bash bench/gpu_session.sh KIT [tests|quick|model|layer|bench|all|profile|tune]..." >&2
	exit 2
}

# profile: ncu's Speed Of Light and tensor-pipe metrics of the expert GEMMs (and the permute /
# combine copies) as kernel_vs_twin --time launches them (one case, a warm-up and 2 timed
# launches per kernel: 30 launches),
# then one line per kernel (the sum over its launches) sorted by time
chk_profile() { # KIT NAME CASE WORK CSV
	local kit=$1 name=$2 case=$3 w=$4 csv=$5
	command -v ncu >/dev/null 2>&1 || { echo "SKIP: ncu is not on the PATH"; exit 77; }
	[ -x "$kit/kvt/$name/kernel_vs_twin" ] || { echo "SKIP: the kit has no kvt/$name"; exit 77; }
	mkdir -p "$w"
	ncu --csv --page raw --launch-count 30 -k 'regex:^moe_' \
		--metrics gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active \
		"$kit/kvt/$name/kernel_vs_twin" --time --only moe_ --case "$case" --iters 2 "$kit/kvt/$name/build" \
		>"$csv" 2>"$w/ncu.err" || { tail -5 "$w/ncu.err"; tail -5 "$csv"; exit 1; }
	python3 - "$csv" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
cols = rows[head]
k = cols.index("Kernel Name")
def col(name):
    return next((i for i, c in enumerate(cols) if c == name), None)
m = {n: col(n) for n in ("gpu__time_duration.sum", "sm__throughput.avg.pct_of_peak_sustained_elapsed",
                         "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
                         "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
                         "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active")}
agg = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0, 0.0])  # launches, ns, then time-weighted %
def num(r, i):
    try:
        return float(r[i].replace(",", "")) if i is not None else 0.0
    except ValueError:
        return 0.0
for r in rows[head + 2:]:  # after the names, a row of units
    if len(r) <= k:
        continue
    a = agg[r[k].split("(")[0]]
    t = num(r, m["gpu__time_duration.sum"])
    a[0] += 1
    a[1] += t
    for j, n in enumerate(list(m)[1:]):
        a[2 + j] += t * num(r, m[n])
total = sum(a[1] for a in agg.values()) or 1
print(f"{'kernel':48s} {'launches':>8s} {'ms':>9s} {'share':>6s} {'SM %':>6s} {'mem %':>6s} {'mma %':>6s} {'gmma %':>6s}")
for name, a in sorted(agg.items(), key=lambda x: -x[1][1]):
    t = a[1] or 1
    print(f"{name[:48]:48s} {a[0]:8d} {a[1] / 1e6:9.3f} {100 * a[1] / total:5.1f}% {a[2] / t:6.1f} {a[3] / t:6.1f} {a[4] / t:6.1f} {a[5] / t:6.1f}")
PY
}

# ---- the checks (each runs in its own process: `gpu_session.sh _check NAME ARGS...`) ----

# train/gpu_bf16 (tests/train/bf16.sh with the kit's prebuilt bf16 trainer): 60 steps of the
# tiny example in bf16 on the GPU within 1% of the fp32 CPU losses, and falling
chk_gpu_bf16() { # KIT DATA WORK
	BF16_TRAIN=$1/tiny_bf16/train TRAIN_DATA=$2 sh tests/train/bf16.sh - "$1/tiny/train" "$3" cuda
}

# golden/CFG_gpu (tests/golden/run_golden.sh with the kit's trainer): one step from the HF
# weights on the golden batch, on the GPU, against transformers' vectors
chk_golden() { # KIT CFG WORK
	local kit=$1 cfg=$2 w=$3 lr
	rm -rf "$w" && mkdir -p "$w" || exit 1
	lr=$(sed -n 's/^  lr: *\([0-9.e+-]*\).*/\1/p' "tests/golden/$cfg/spec.yaml")
	if ! "$kit/golden_$cfg/train" --init-from "tests/golden/$cfg" --batch "tests/golden/$cfg/golden.safetensors" \
		--dump "$w/dump.safetensors" --metrics "$w/metrics.jsonl" --ckpt-dir "$w/ckpt" --device cuda 2>"$w/err.txt"; then
		cat "$w/err.txt"
		grep -q "no CUDA driver\|no CUDA device" "$w/err.txt" && exit 77
		exit 1
	fi
	"$kit/bin/golden_compare" "$w/dump.safetensors" "tests/golden/$cfg/golden.safetensors" "$lr"
}

# gpu/kernels_NAME (tests/gpu/run.sh's run, the build done by the kit): every kernel of the
# build against its CPU twin, for each of SEEDS, with kernel_vs_twin's ARGS; prints one line per
# seed with the verdict (and the cases --max-rows left out) and the largest NMSE that was not exact
chk_kvt() { # KIT NAME WORK SEEDS [ARGS...]
	local kit=$1 name=$2 w=$3 seeds=$4 seed rc=0 r skipped=0 n=0
	shift 4
	mkdir -p "$w"
	for seed in $seeds; do
		local args=("$@")
		[ "$seed" = default ] || args+=(--seed "$seed")
		"$kit/kvt/$name/kernel_vs_twin" "${args[@]}" "$kit/kvt/$name/build" >"$w/seed_$seed.txt" 2>&1
		r=$?
		n=$((n + 1))
		[ $r -eq 77 ] && skipped=$((skipped + 1))
		[ $r -ne 0 ] && [ $r -ne 77 ] && rc=1
		cat "$w/seed_$seed.txt"
		echo "seed $seed: exit $r, $(grep -E '^(PASS|FAIL|SKIP)' "$w/seed_$seed.txt" | tail -1),$(worst_nmse "$w/seed_$seed.txt")"
	done
	[ $rc -eq 0 ] && [ $skipped -eq $n ] && return 77
	return $rc
}

# the largest NMSE printed as OUT=1.2e-08 in a kernel_vs_twin listing, and where
worst_nmse() {
	awk '{for (i = 1; i <= NF; i++) if (match($i, /=[0-9]\.[0-9]e[-+][0-9]+/)) {
			v = substr($i, RSTART + 1, RLENGTH - 1) + 0; if (v >= w) {w = v; at = $1 " " $2 " " $i}}}
		END {if (at != "") printf " worst NMSE %.1e (%s)", w, at; else printf " every output exact or 0"}' "$1"
}

# tune/NAME: kernel_vs_twin --time over one kvt build (its expert GEMMs at T = 4096 and 32768,
# balanced and skewed), its lines also kept in OUTFILE for the table
chk_tune() { # KIT NAME OUTFILE [ARGS...]
	local kit=$1 name=$2 f=$3 rc
	shift 3
	"$kit/kvt/$name/kernel_vs_twin" --time "$@" "$kit/kvt/$name/build" >"$f" 2>&1
	rc=$?
	cat "$f"
	return $rc
}

# the tune table from kernel_vs_twin --time listings, one file per variant (DIR/VARIANT.txt):
# kernel x case, each variant's median ms and TFLOP/s (GB/s for the copies), the fastest; then per kernel the sum
# over its cases and the variant with the least
tune_table() { # DIR VARIANT...
	local dir=$1
	shift
	local files=() v
	for v in "$@"; do
		[ -f "$dir/$v.txt" ] && files+=("$dir/$v.txt")
	done
	[ ${#files[@]} -gt 0 ] || { echo "no timings: every variant was skipped"; return; }
	awk -v order="$*" '
	FNR == 1 { v = FILENAME; sub(/.*\//, "", v); sub(/\.txt$/, "", v) }
	$2 ~ /^T=/ && $5 == "ms" && ($7 == "TFLOP/s" || $7 == "GB/s") {
		k = $1; sub(/_(bf16|f32)_.*/, "", k)
		key = k " " substr($2, 3) " " $3
		if (!(key in seen)) { seen[key] = 1; keys[++nk] = key; kk[nk] = k }
		ms[key, v] = $4; tf[key, v] = $6; unit[key] = $7 == "GB/s" ? "GB/s" : "TF"
		sum[k, v] += $4; cnt[k, v]++
		if (!(k in ncase)) { kern[++nkern] = k; ncase[k] = 0 }
		if (cnt[k, v] > ncase[k]) ncase[k] = cnt[k, v]
	}
	END {
		nv = split(order, vs, " ")
		if (!nk) { print "no timings: no variant printed a timing line (see the log)"; exit }
		printf "%-24s %-16s", "kernel", "case"
		for (i = 1; i <= nv; i++) printf " %24s", vs[i]
		printf "  %s\n", "fastest"
		for (j = 1; j <= nk; j++) {
			split(keys[j], p, " ")
			printf "%-24s %-16s", p[1], "T=" p[2] " " p[3]
			best = ""
			for (i = 1; i <= nv; i++) {
				if ((keys[j], vs[i]) in ms) {
					printf " %9.3f ms %5.0f %-4s", ms[keys[j], vs[i]], tf[keys[j], vs[i]], unit[keys[j]]
					if (best == "" || ms[keys[j], vs[i]] < ms[keys[j], best]) best = vs[i]
				} else
					printf " %24s", "-"
			}
			printf "  %s\n", best
		}
		print ""
		print "best variant per kernel (the sum of its cases ms; variants with every case only):"
		for (j = 1; j <= nkern; j++) {
			k = kern[j]; best = ""; line = ""
			for (i = 1; i <= nv; i++) {
				if (cnt[k, vs[i]] != ncase[k]) continue
				line = line sprintf("  %s %.3f", vs[i], sum[k, vs[i]])
				if (best == "" || sum[k, vs[i]] < sum[k, best]) best = vs[i]
			}
			printf "  %-24s %-20s (ms:%s)\n", k, best, line
		}
	}' "${files[@]}"
}

# compute-sanitizer memcheck over one kernel_vs_twin build (default seed)
chk_memcheck() { # KIT NAME
	compute-sanitizer --tool memcheck --error-exitcode 3 "$1/kvt/$2/kernel_vs_twin" "$1/kvt/$2/build" 2>&1 |
		grep -v ' PASS$'
}

if [ -n "$check_fn" ]; then
	"chk_$check_fn" "$@"
	exit $?
fi

# ---- the session ----
[ $# -ge 1 ] || usage
[ -d "$1" ] || { echo "gpu_session.sh: no kit at $1 (build it with scripts/gpu_kit.sh)" >&2; exit 2; }
kit=$(cd "$1" && pwd)
kit_arg=$1
shift
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(tests)
for p in "${parts[@]}"; do
	case $p in tests | quick | model | layer | bench | all | profile | tune) ;; *) usage ;; esac
done
[ -f "$kit/kit.env" ] || { echo "gpu_session.sh: $kit/kit.env is missing: not a kit" >&2; exit 2; }
KIT_COMMIT=unknown KIT_DATE=unknown KIT_ARCH=sm_90a KIT_BUILT_ON=unknown KIT_TOKENS=
# shellcheck source=/dev/null
. "$kit/kit.env"

t_start=$(date +%s)
deadline=$((t_start + ${GPU_SESSION_BUDGET_S:-540}))
out=${OUT:-$root/build/gpu_session}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_session.XXXXXX")
trap 'rm -rf "$work"' EXIT
data=$root/data/tiny_shakespeare_train.bin
orig_ld=${LD_LIBRARY_PATH:-}
n_pass=0 n_fail=0 n_skip=0

# The libraries the kit leaves to the machine: where the loader does not know them, look in
# CUDA's and the Python wheels' usual homes and put the directory on the kit's path.
extra_ld=
lib_report=
for lib in libcuda.so.1 libcublasLt.so.13 libnccl.so.2 libnvrtc.so.13; do
	where=
	if ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$lib "; then
		where="loader cache"
	else
		for d in ${orig_ld//:/ } /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 \
			$(python3 -c 'import site; print(*site.getsitepackages())' 2>/dev/null | tr ' ' '\n' |
				sed 's|$|/nvidia/*/lib|'); do
			for f in $d/$lib; do
				[ -e "$f" ] || continue
				where=$(dirname "$f")
				case ":$orig_ld:$extra_ld:" in *":$where:"*) ;; *) extra_ld=$extra_ld:$where ;; esac
				break 2
			done
		done
	fi
	lib_report="$lib_report $lib (${where:-not found});"
done
# the kit's compressed libraries (scripts/gpu_kit.sh: those over 4 MiB), unpacked
unpacked=$work/lib
mkdir -p "$unpacked"
for f in "$kit"/lib/*.xz; do
	[ -e "$f" ] || continue
	dst=$unpacked/$(basename "$f" .xz)
	xz -dc "$f" >"$dst" 2>/dev/null ||
		python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
			"$f" "$dst" || { echo "gpu_session.sh: cannot unpack $f (neither xz nor python3's lzma)" >&2; exit 1; }
done
kit_ld=$unpacked:$kit/lib$extra_ld${orig_ld:+:$orig_ld}

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
# is there a GPU the kit's cubins run on? kernel_vs_twin --probe: the --arch GPU 0 wants, or 77.
# nogpu: why every check is skipped (empty: run them); GPU_SESSION_FORCE=1 runs them anyway
# (to exercise this script where there is no GPU: the checks then skip or fail on their own)
nogpu='' nogpu_why=''
probe=$(LD_LIBRARY_PATH=$kit_ld "$kit/kvt/f32/kernel_vs_twin" --probe 2>&1)
case $? in
0)
	if [ "$probe" != "$KIT_ARCH" ]; then
		nogpu="the kit is for $KIT_ARCH, this GPU wants $probe"
		nogpu_why="$nogpu: rebuild it with ARCH=$probe scripts/gpu_kit.sh"
		n_fail=1
	fi
	;;
*)
	nogpu="no GPU"
	nogpu_why="no GPU: kernel_vs_twin --probe says: ${probe//$'\n'/ }"
	;;
esac
if [ "${GPU_SESSION_FORCE:-0}" = 1 ] && [ -n "$nogpu" ]; then
	nogpu_why="$nogpu_why; GPU_SESSION_FORCE=1: running every check regardless"
	nogpu=
fi

header() { # header TITLE COMMAND
	echo "# $1"
	echo "date:     $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "commit:   $KIT_COMMIT (the kit's: scripts/gpu_kit.sh, $KIT_DATE, moec build --arch $KIT_ARCH)"
	echo "device:   ${gpu:-none (nvidia-smi found no GPU)}, $(nproc) CPU cores"
	echo "how:      programs built by scripts/gpu_kit.sh ($KIT_BUILT_ON), run here from the kit with its libraries"
	echo "command:  $2"
	echo "libs:    $lib_report"
	[ -z "$nogpu_why" ] || echo "note:     $nogpu_why"
}

# check NAME TIMEOUT DETAIL_REGEX CMD...: run CMD (output to the log), print the verdict
# line and the output lines matching DETAIL_REGEX
check() {
	local name=$1 limit=$2 detail=$3 status rc t0 secs left
	shift 3
	if [ -n "$nogpu" ]; then
		status=SKIP
		result "$status" "$name" 0 "$nogpu"
		return
	fi
	left=$((deadline - $(date +%s) - 5))
	if [ "$left" -lt 15 ]; then
		result SKIP "$name" 0 "the session's time budget is spent (GPU_SESSION_BUDGET_S)"
		return
	fi
	[ "$limit" -gt "$left" ] && limit=$left
	t0=$(date +%s.%N)
	LD_LIBRARY_PATH=$kit_ld OPENBLAS_NUM_THREADS=1 timeout -k 10 "$limit" "$@" >"$work/log.txt" 2>&1
	rc=$?
	secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
	{
		echo "==== $name: exit $rc, $secs s: $*"
		cat "$work/log.txt"
	} >>"$log"
	case $rc in
	0) status=PASS ;;
	77) status=SKIP ;;
	124 | 137) status=TIMEOUT ;;
	*) status=FAIL ;;
	esac
	local why=
	if [ $rc = 77 ]; then
		why=$(grep -m1 'SKIP' "$work/log.txt" || tail -1 "$work/log.txt")
	elif [ "$status" = TIMEOUT ]; then
		why="killed after $limit s"
	elif [ "$status" = FAIL ]; then
		why="exit $rc"
	fi
	result "$status" "$name" "$secs" "$why"
	if [ "$status" = FAIL ] && ! grep -Eq "$detail" "$work/log.txt"; then
		tail -8 "$work/log.txt" | sed 's/^/      /' | tee -a "$summary"
	else
		grep -E "$detail" "$work/log.txt" | head -12 | cut -c1-240 | sed 's/^/      /' | tee -a "$summary"
	fi
}

result() { # result STATUS NAME SECS WHY
	printf '%-7s %-28s %6s s  %s\n' "$1" "$2" "$3" "$4" | tee -a "$summary"
	case $1 in
	PASS) n_pass=$((n_pass + 1)) ;;
	SKIP) n_skip=$((n_skip + 1)) ;;
	*) n_fail=$((n_fail + 1)) ;;
	esac
}

self=$root/bench/gpu_session.sh
run_tests() {
	summary=$out/gpu_tests.txt
	log=$out/gpu_tests.log
	: >"$log"
	header "moec GPU checks (the ctest gpu label's, run from a kit)" "bash bench/gpu_session.sh $kit_arg ${parts[*]}" |
		tee "$summary"
	echo | tee -a "$summary"
	mkdir -p "$work/bin"
	# the tiny trainer reading the repository's shard (the path built into it is the kit
	# machine's), on the CPU or the GPU as each test asks; and always on the GPU (resume)
	printf '#!/bin/sh\nexec "%s" --data "%s" "$@"\n' "$kit/tiny/train" "$data" >"$work/bin/tiny"
	printf '#!/bin/sh\nexec "%s" --data "%s" --device cuda "$@"\n' "$kit/tiny/train" "$data" >"$work/bin/tiny_cuda"
	chmod +x "$work/bin/tiny" "$work/bin/tiny_cuda"

	check gpu/device_smoke 180 'passed|failed|SKIP' "$kit/bin/device_smoke"
	check gpu/nccl_one_rank 120 'NCCL|ok|FAIL|SKIP' "$kit/bin/nccl_check" gpu
	check gpu/nccl_ranks 180 'ranks|FAIL|SKIP' sh tests/bootstrap/nccl_ranks.sh "$kit/bin/nccl_check"
	check train/gpu_vs_cpu 180 'worst|compared|loss cpu|FAIL' \
		sh tests/train/gpu_vs_cpu.sh "$work/bin/tiny" "$kit/bin/golden_compare" "$work/gpu_vs_cpu"
	check train/gpu_bf16 240 '^step (1|30|60):|FAIL' bash "$self" _check gpu_bf16 "$kit" "$data" "$work/gpu_bf16"
	check golden/a_gpu 120 'worst|compared|FAIL' bash "$self" _check golden "$kit" a "$work/golden_a"
	check golden/b_gpu 120 'worst|compared|FAIL' bash "$self" _check golden "$kit" b "$work/golden_b"
	check train/resume_gpu 240 'PASS|FAIL|note' sh tests/train/resume.sh "$work/bin/tiny_cuda" "$work/resume"
	for v in f32 bf16 capacity capacity_late ep; do
		[ -d "$kit/kvt/$v" ] || { result SKIP "gpu/kernels_$v" 0 "the kit has no kvt/$v"; continue; }
		check "gpu/kernels_$v" 300 '^seed ' bash "$self" _check kvt "$kit" "$v" "$work/kvt_$v" \
			"${KVT_SEEDS:-$([ -n "${quick:-}" ] && echo default || echo default 1 2)}"
	done
	if [ -n "${quick:-}" ]; then # the tiny shapes only (part quick)
		echo | tee -a "$summary"
		echo "checks: $n_pass passed, $n_fail failed or timed out, $n_skip skipped ($(($(date +%s) - t_start)) s; quick: the tiny shapes only)" |
			tee -a "$summary"
		return
	fi
	# the real shapes (E 128, H 2048, I 768, 32/4 heads of 128, vocab 151936): one seed, no case
	# of more than KVT30_MAX_ROWS rows, stand-in expert weights (tests/gpu/README.md, --max-rows)
	if [ -d "$kit/kvt/qwen30b" ]; then
		check gpu/kernels_qwen30b 240 '^seed ' bash "$self" _check kvt "$kit" qwen30b "$work/kvt_qwen30b" default \
			--max-rows "${KVT30_MAX_ROWS:-1000}"
	else
		result SKIP gpu/kernels_qwen30b 0 "the kit has no kvt/qwen30b (built before scripts/gpu_kit.sh made it)"
	fi
	if command -v compute-sanitizer >/dev/null 2>&1; then
		for v in f32 bf16; do
			check "memcheck/kernels_$v" 150 'ERROR SUMMARY|^(PASS|FAIL):' bash "$self" _check memcheck "$kit" "$v"
		done
	else
		result SKIP memcheck/kernels 0 "compute-sanitizer is not on the PATH"
	fi
	# the expert GEMMs' other engine (kernels/moe_gemm.cuh): the sm_90a kit's GEMMs above ran on
	# wgmma; these builds for plain sm_90 run them on mma.sync (the fallback). Last: that engine
	# passed on an H100 before wgmma existed, so it is what a short budget drops first.
	if [ -d "$kit/kvt/bf16_sm90" ]; then
		check gpu/kernels_bf16_sm90 120 '^seed ' bash "$self" _check kvt "$kit" bf16_sm90 "$work/kvt_bf16_sm90" \
			"${KVT_SEEDS:-default 1 2}"
	fi
	if [ -d "$kit/kvt/qwen30b_sm90" ]; then
		check gpu/kernels_qwen30b_sm90 180 '^seed ' bash "$self" _check kvt "$kit" qwen30b_sm90 \
			"$work/kvt_qwen30b_sm90" default --max-rows "${KVT30_MAX_ROWS:-1000}" --only _i768
	fi
	echo | tee -a "$summary"
	echo "checks: $n_pass passed, $n_fail failed or timed out, $n_skip skipped ($(($(date +%s) - t_start)) s)" |
		tee -a "$summary"
}

run_bench() { # run_bench layer|model|all
	summary=$out/moe_gpu.txt
	if [ -n "$nogpu" ]; then
		header "moec on the GPU vs PyTorch (bench/moe_gpu.sh run)" "bash bench/gpu_session.sh $kit_arg ${parts[*]}" \
			>"$summary"
		result SKIP "bench/$1" 0 "$nogpu"
		return
	fi
	# the kit's libraries for the trainers only: python and torch keep the machine's
	LD_LIBRARY_PATH=$orig_ld MOE_GPU_LIBS=$kit_ld MOE_GPU_DEADLINE=$deadline MOE_GPU_COMMIT="$KIT_COMMIT" \
		MOE_GPU_TOKENS="${GPU_SESSION_TOKENS:-${KIT_TOKENS:-4096 8192 16384 32768}}" REPORT=$summary \
		MOE_GPU_BUILT="trainers built by scripts/gpu_kit.sh ($KIT_DATE, moec build --arch $KIT_ARCH, on $KIT_BUILT_ON), run from the kit" \
		MOE_GPU_COMMAND="bash bench/gpu_session.sh $kit_arg ${parts[*]}" \
		bash bench/moe_gpu.sh run "$kit/bench" "$1" 2>&1 | tee -a "$out/moe_gpu.log"
	local rc=${PIPESTATUS[0]}
	if [ "$rc" -ne 0 ]; then
		n_fail=$((n_fail + 1))
		echo "FAIL    bench/$1: bench/moe_gpu.sh exit $rc"
	fi
	if grep -q 'failed' "$summary" 2>/dev/null; then
		n_fail=$((n_fail + 1))
		echo "FAIL    bench/$1: some measurements failed (the lines with 'failed' in $summary)"
	fi
}

echo "gpu_session: kit $kit_arg ($KIT_COMMIT, $KIT_ARCH, built $KIT_DATE); parts: ${parts[*]}; budget until $(date -u -d "@$deadline" +%H:%M:%SZ 2>/dev/null || echo "$deadline")"
[ -n "$nogpu_why" ] && echo "gpu_session: $nogpu_why${nogpu:+: every check is reported SKIP}"
run_profile() {
	summary=$out/gpu_tests.txt
	log=$out/gpu_tests.log
	[ -s "$summary" ] || header "moec GPU checks (the ctest gpu label's, run from a kit)" \
		"bash bench/gpu_session.sh $kit_arg ${parts[*]}" >"$summary"
	echo | tee -a "$summary"
	check profile/moe_gemms 240 '^[a-z]|SKIP' bash "$self" _check profile "$kit" "${PROFILE_VARIANT:-qwen30b}" \
		"${PROFILE_CASE:-T=32768 balanced}" "$work/profile" "$out/ncu_moe.csv"
}

# tune: kernel_vs_twin --time on each tile variant, then the table (tune_table)
run_tune() {
	summary=$out/tune.txt
	log=$out/tune.log
	: >"$log"
	header "moec expert GEMMs per tile variant: kernel_vs_twin --time (Qwen3-30B-A3B: E 128, H 2048, I 768, top-8, bf16)" \
		"bash bench/gpu_session.sh $kit_arg ${parts[*]}${TUNE_ARGS:+ (TUNE_ARGS=$TUNE_ARGS)}" | tee "$summary"
	echo "cases:    T tokens x 8 rows; balanced: each token the top-8 of 128 N(0,1) logits; skewed: +4 on experts" | tee -a "$summary"
	echo "          0..7's logits (MOERT_ROUTER_BIAS=0-7:4); the median of 20 launches after a warm-up" | tee -a "$summary"
	echo "          (tests/gpu/kvt_core.c); TFLOP/s = 2 x rows x the GEMM's other two dimensions / time" | tee -a "$summary"
	echo "variants:" | tee -a "$summary"
	local v vs=() names
	for v in ${TUNE_VARIANTS:-qwen30b qwen30b_st4 qwen30b_persist qwen30b_persist_st4 qwen30b_sm90 qwen30b_sm90_tn128}; do
		[ -f "$kit/kvt/$v/build/manifest.json" ] || continue
		# the arch and one GEMM instance name: the constants that differ from the defaults show
		names=$(grep -o '"name": *"moe_down_fwd[^"]*"' "$kit/kvt/$v/build/manifest.json" | head -1 | sed 's/.*: *"//; s/"$//')
		printf '  %-20s --arch %s, %s\n' "$v" "$(sed -n 's/.*"arch": *"\([^"]*\)".*/\1/p' "$kit/kvt/$v/build/manifest.json" |
			head -1)" "$names" | tee -a "$summary"
	done
	echo | tee -a "$summary"
	# the persistent variants (PERSIST, kernels/moe_gemm.cuh) are new to a GPU: their six expert
	# GEMMs against the twins first (real shapes, --max-rows: 132 CTAs then walk several tiles
	# each), so that a time is not taken of a wrong kernel
	for v in qwen30b_persist qwen30b_persist_st4; do
		case " ${TUNE_VARIANTS:-qwen30b_persist qwen30b_persist_st4} " in *" $v "*) ;; *) continue ;; esac
		[ -d "$kit/kvt/$v" ] || continue
		check "gpu/kernels_$v" 180 '^seed ' bash "$self" _check kvt "$kit" "$v" "$work/kvt_$v" default \
			--max-rows "${KVT30_MAX_ROWS:-1000}" --only _i768
	done
	mkdir -p "$work/tune"
	for v in ${TUNE_VARIANTS:-qwen30b qwen30b_st4 qwen30b_persist qwen30b_persist_st4 qwen30b_sm90 qwen30b_sm90_tn128}; do
		[ -d "$kit/kvt/$v" ] || { result SKIP "tune/$v" 0 "the kit has no kvt/$v"; continue; }
		# shellcheck disable=SC2086 # TUNE_ARGS is a word list
		check "tune/$v" 150 '^(PASS|FAIL)' bash "$self" _check tune "$kit" "$v" "$work/tune/$v.txt" ${TUNE_ARGS:-}
		vs+=("$v")
	done
	echo | tee -a "$summary"
	tune_table "$work/tune" "${vs[@]}" | tee -a "$summary"
}

layer=0 model=0
for p in "${parts[@]}"; do
	case $p in
	tests) run_tests ;;
	quick) quick=1 run_tests ;;
	profile) run_profile ;;
	tune) run_tune ;;
	layer) layer=1 ;;
	model) model=1 ;;
	bench) layer=1 model=1 ;;
	all) run_tests; layer=1 model=1 ;;
	esac
done
: >"$out/moe_gpu.log"
if [ $layer = 1 ] && [ $model = 1 ]; then
	run_bench all
elif [ $layer = 1 ]; then
	run_bench layer
elif [ $model = 1 ]; then
	run_bench model
else
	rm -f "$out/moe_gpu.log"
fi
find "$out" -maxdepth 1 -type f -empty -delete
echo "gpu_session: done in $(($(date +%s) - t_start)) s; results in $out: $(find "$out" -maxdepth 1 -type f -printf '%f ')"
[ "$n_fail" -eq 0 ]
