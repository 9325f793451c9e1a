#!/bin/sh
# nccl_ranks.sh NCCL_CHECK EMU_LIB - runtime/comm_nccl.c on several ranks of the device
# emulator (README.md here): tests/bootstrap/nccl_check's gpu checks (on every group an
# all-reduce, all-to-all-v rounds with zero counts, an in-place all-gather, each against
# the values every member put in, and the bytes counted) under mpirun, started as a
# trainer is (gpu-mpi: comm.c's MPI world, the id by MPI_Bcast) and torchrun-style (gpu:
# the id over the TCP bootstrap, MPI started by the emulated NCCL), over layouts whose dp,
# tp, ep and edp groups have 2 and 4 ranks. Each rank's emulated NCCL must have split
# exactly the groups that are neither one rank nor the world (the others reuse the world's
# communicator or have none). Also one rank without mpirun, and two torchrun-style ranks
# without it, which must fail saying so.
set -u
bin=$1 emu=$2
export LD_LIBRARY_PATH="$emu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" MOERT_EMU_TRACE=1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() {
	echo "FAIL: $*"
	exit 1
}

# splits NP TP EP: how many of the dp, tp, ep and edp groups are split off the world
splits() {
	n=0
	for s in $(($1 / $2)) $2 $3 $(($1 / $3)); do
		[ "$s" -gt 1 ] && [ "$s" -lt "$1" ] && n=$((n + 1))
	done
	echo $n
}

# check NP TP EP OUT: every rank passed, and split as the layout says
check() {
	np=$1 tp=$2 ep=$3 out=$4
	ok=$(grep -c "NCCL 2\.[0-9.]*, groups .*: [0-9]* passed, 0 failed" "$out")
	[ "$ok" = "$np" ] || { cat "$out"; fail "$np ranks, tp $tp, ep $ep: $ok ranks passed"; }
	want=$(splits "$np" "$tp" "$ep")
	got=$(grep -c "libnccl.so.2: [0-9]* communicators ($want splits)" "$out")
	[ "$got" = "$np" ] || { cat "$out"; fail "$np ranks, tp $tp, ep $ep: not every rank split $want groups"; }
	grep -q "on moec device emulator" "$out" || fail "not on the emulator"
	echo "$np ranks, tp $tp, ep $ep ($want groups split): ok; rank 0: $(grep -m1 'libnccl.so.2:' "$out" | sed 's/.*: //')"
}

# mpi NP MODE TP EP: nccl_check MODE on NP ranks under mpirun; torchrun's variables from Open MPI's
mpi() {
	np=$1 mode=$2 tp=$3 ep=$4
	port=$("$bin" free-port) || fail "no free port"
	mpirun -np "$np" --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x MOERT_EMU_TRACE \
		sh -c 'RANK=$OMPI_COMM_WORLD_RANK WORLD_SIZE=$OMPI_COMM_WORLD_SIZE LOCAL_RANK=$OMPI_COMM_WORLD_LOCAL_RANK \
			LOCAL_WORLD_SIZE=$OMPI_COMM_WORLD_LOCAL_SIZE MASTER_ADDR=127.0.0.1 MASTER_PORT=$1 exec "$0" "$2" "$3" "$4"' \
		"$bin" "$port" "$mode" "$tp" "$ep" >"$dir/out" 2>&1 || { cat "$dir/out"; fail "mpirun -np $np nccl_check $mode $tp $ep"; }
	check "$np" "$tp" "$ep" "$dir/out"
}

# one rank, no MPI launcher: no MPI at all; the all-to-all is a send to itself
"$bin" gpu >"$dir/out" 2>&1 || { cat "$dir/out"; fail "one rank"; }
check 1 1 1 "$dir/out"
grep -q "MPI initialized here" "$dir/out" && fail "one rank without a launcher started MPI"

mpi 4 gpu-mpi 2 2 # every group 2 ranks
mpi 4 gpu 2 2     # the same, torchrun-style
mpi 4 gpu-mpi 1 4 # dp and ep the world, tp and edp one rank
mpi 4 gpu 4 2     # tp the world, ep and edp 2
mpi 4 gpu-mpi 2 4 # ep the world, dp and tp 2, edp one rank
mpi 8 gpu-mpi 2 2 # dp and edp 4 ranks split off 8, tp and ep 2

# torchrun-style ranks with no MPI launcher: the emulator cannot join them, and says so
port=$("$bin" free-port) || fail "no free port"
for r in 0 1; do
	RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
		"$bin" gpu >"$dir/bad$r" 2>&1 &
done
wait
grep -q "start the processes with mpirun" "$dir/bad0" || { cat "$dir/bad0"; fail "2 ranks without mpirun did not fail so"; }
echo "2 ranks without mpirun: $(grep -o 'ncclCommInitRank.*' "$dir/bad0" | head -1)"
echo PASS
