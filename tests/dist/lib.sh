# lib.sh - shared by the distributed tests: build a layout of the tiny example, run it.
. "$(dirname "$0")/../train/lib.sh"

# build_layout MOEC OUT RANKS EP MICRO_BATCH [TP [MOEC_BUILD_ARGS...]]: the tiny example's
# trainer for RANKS ranks with EP expert-parallel and TP tensor-parallel ranks (dp = RANKS /
# TP); MICRO_BATCH rows per data-parallel rank keep the global batch at 4 rows, the
# single-rank example's. Further arguments go to moec build (--set parallel.shard_optimizer=true).
build_layout() {
	_m=$1 _o=$2 _r=$3 _e=$4 _b=$5 _t=${6:-1}
	shift 5
	[ $# -gt 0 ] && shift
	"$_m" build examples/tiny_qwen3_moe.yaml -o "$_o" --set parallel.gpus_per_node="$_r" --set parallel.ep="$_e" \
		--set train.micro_batch="$_b" --set parallel.tp="$_t" "$@" >"$_o.build.log" 2>&1 ||
		fail "moec build ($_r ranks, ep $_e, tp $_t $*): $(tail -3 "$_o.build.log")"
	within_plan "$_o.build.log"
}

# run_ranks N TRAIN ARGS...: N ranks under mpirun (one rank: directly)
run_ranks() {
	n=$1
	shift
	if [ "$n" = 1 ]; then
		"$@"
	else
		mpirun -np "$n" --oversubscribe --bind-to none "$@"
	fi
}
