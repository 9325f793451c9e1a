#!/bin/sh
# run3.sh BOOTSTRAP_RANK - three processes started the way `torchrun --no-python
# --nproc-per-node 3 --master-addr 127.0.0.1 --master-port P bootstrap_rank SEED` would:
# each with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT
# in its environment. Rank 0 starts last, so the others must keep trying. Every rank must
# get rank 0's blob: first with MASTER_PORT free (a plain script), then with it held and
# TORCHELASTIC_USE_AGENT_STORE=True, as torchrun's agent holds it for its own store (the
# rendezvous then takes the next port). Last, a rank started with a bad RANK must fail,
# naming it.
set -u
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
seed=$$
fail=0

# three_ranks MASTER_PORT EXPECTED_PORT PORT_VAR [VAR=VALUE...]
three_ranks() {
	mport=$1 want=$2 var=$3
	shift 3
	for r in 1 2 0; do
		[ $r = 0 ] && sleep 0.3
		env "$@" RANK=$r WORLD_SIZE=3 LOCAL_RANK=$r LOCAL_WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$mport \
			"$bin" "$seed" 20 >"$dir/out$r" 2>&1 &
		eval pid$r=\$!
	done
	for r in 0 1 2; do
		eval pid=\$pid$r
		if ! wait "$pid"; then
			echo "rank $r failed:"
			fail=1
		fi
		cat "$dir/out$r"
		grep -q "^rank $r of 3 (local $r of 3): blob ok from 127.0.0.1:$want ($var)\$" "$dir/out$r" || fail=1
	done
}

port=$("$bin" free-port) || exit 1
three_ranks "$port" "$port" "MASTER_PORT"

pair=$("$bin" free-port 2) || exit 1
"$bin" hold-port "$pair" 30 &
holder=$!
sleep 0.2
three_ranks "$pair" $((pair + 1)) "MASTER_PORT + 1" TORCHELASTIC_USE_AGENT_STORE=True
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

# a bad RANK stops the rank before it connects, with the variable named
if RANK=3 WORLD_SIZE=3 LOCAL_RANK=0 LOCAL_WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
	"$bin" "$seed" 1 >"$dir/bad" 2>&1; then
	echo "RANK=3 of 3 was accepted"
	fail=1
fi
cat "$dir/bad"
grep -q "RANK=3 is out of range: 0..2 with WORLD_SIZE=3" "$dir/bad" || fail=1

[ $fail = 0 ] && echo "3 ranks, twice: ok"
exit $fail
