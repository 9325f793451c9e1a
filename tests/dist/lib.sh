# lib.sh - shared by the distributed tests: build a layout of the tiny example, run it.
. "$(dirname "$0")/../train/lib.sh"

# build_layout MOEC OUT RANKS EP MICRO_BATCH [TP [--set KEY=VALUE]...]: the tiny example's
# trainer for RANKS ranks with EP expert-parallel and TP tensor-parallel ranks (dp = RANKS /
# TP); MICRO_BATCH rows per data-parallel rank keep the global batch at 4 rows, the
# single-rank example's. Further arguments go to moec build.
build_layout() {
	bl_moec=$1 bl_out=$2 bl_ranks=$3 bl_ep=$4 bl_mb=$5 bl_tp=${6:-1} # sh has no locals: callers' names kept
	shift $(($# < 6 ? $# : 6))
	"$bl_moec" build examples/tiny_qwen3_moe.yaml -o "$bl_out" --set parallel.gpus_per_node="$bl_ranks" \
		--set parallel.ep="$bl_ep" --set train.micro_batch="$bl_mb" --set parallel.tp="$bl_tp" "$@" >"$bl_out.build.log" 2>&1 ||
		fail "moec build ($bl_ranks ranks, ep $bl_ep, tp $bl_tp $*): $(tail -3 "$bl_out.build.log")"
	within_plan "$bl_out.build.log"
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
