# lib.sh - shared by the distributed tests: build a layout of the tiny example, run it.
. "$(dirname "$0")/../train/lib.sh"

# build_layout MOEC OUT RANKS EP MICRO_BATCH [TP]: the tiny example's trainer for RANKS ranks
# with EP expert-parallel and TP tensor-parallel ranks (dp = RANKS / TP); MICRO_BATCH rows
# per data-parallel rank keep the global batch at 4 rows, the single-rank example's.
build_layout() {
	"$1" build examples/tiny_qwen3_moe.yaml -o "$2" --set parallel.gpus_per_node="$3" --set parallel.ep="$4" \
		--set train.micro_batch="$5" --set parallel.tp="${6:-1}" >"$2.build.log" 2>&1 ||
		fail "moec build ($3 ranks, ep $4, tp ${6:-1}): $(tail -3 "$2.build.log")"
	within_plan "$2.build.log"
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
