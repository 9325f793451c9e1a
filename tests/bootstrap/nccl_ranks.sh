#!/bin/sh
# nccl_ranks.sh NCCL_CHECK [N [TP EP]] - `nccl_check gpu TP EP` on N GPUs of this machine,
# one process per GPU started the way `torchrun --no-python --nproc-per-node N` would
# (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). N defaults to
# every GPU nvidia-smi lists, TP and EP to 2 where N is even (so dp, tp, ep and edp groups
# all have several ranks when N >= 4). Exits 77 (skipped) with fewer than 2 GPUs.
set -u
bin=$1
n=${2:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')}
if [ "${n:-0}" -lt 2 ]; then
	echo "SKIP: nccl_ranks needs 2 GPUs or more, this machine has ${n:-0}"
	exit 77
fi
tp=${3:-$([ $((n % 2)) = 0 ] && echo 2 || echo 1)}
ep=${4:-$([ $((n % 2)) = 0 ] && echo 2 || echo 1)}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
port=$("$bin" free-port) || exit 1

r=0
pids=""
while [ $r -lt "$n" ]; do
	RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
		"$bin" gpu "$tp" "$ep" >"$dir/out$r" 2>&1 &
	pids="$pids $!"
	r=$((r + 1))
done
fail=0
skip=0
r=0
for pid in $pids; do
	wait "$pid"
	rc=$?
	[ $rc = 77 ] && skip=1
	[ $rc != 0 ] && [ $rc != 77 ] && fail=1
	sed "s/^/[$r] /" "$dir/out$r"
	r=$((r + 1))
done
[ $fail = 1 ] && exit 1
[ $skip = 1 ] && exit 77
echo "$n ranks (tp $tp, ep $ep): ok"
