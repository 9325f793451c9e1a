#!/bin/sh
# resume_topology.sh MOEC REF_DIR WORK - checkpoints do not depend on the layout: a run saved
# at EP 4 (4 ranks) resumes at EP 2 (2 ranks) and on 1 rank, and each continues along the
# loss trajectory of the uninterrupted single-rank run (fp32 tolerance: the layouts sum in
# different orders).
. "$(dirname "$0")/lib.sh"
moec=$1 ref=$2 work=$3
rm -rf "$work" && mkdir -p "$work" || exit 1
build_layout "$moec" "$work/ep4" 4 4 1
build_layout "$moec" "$work/ep2" 2 2 2
cd "$work" || exit 1
run_ranks 4 ep4/train --quiet --steps 4 --stop-after 2 --save-every 2 --no-resume --ckpt-dir from4 --metrics ep4.jsonl \
	>ep4.out 2>&1 || fail "EP 4: $(tail -5 ep4.out)"
cp -r from4 to2 && cp -r from4 to1
run_ranks 2 ep2/train --steps 4 --save-every 0 --ckpt-dir to2 --metrics ep2.jsonl >ep2.out 2>&1 || fail "EP 2: $(tail -5 ep2.out)"
grep -q "resumed from to2/step_00000002 at step 2" ep2.out || fail "EP 2 did not resume: $(head -5 ep2.out)"
"$ref/one/train" --steps 4 --save-every 0 --ckpt-dir to1 --metrics one.jsonl >one.out 2>&1 || fail "1 rank: $(tail -5 one.out)"
grep -q "resumed from to1/step_00000002 at step 2" one.out || fail "1 rank did not resume"
for s in 1 2; do
	a=$(metric ep4.jsonl $s loss) b=$(metric "$ref/traj.jsonl" $s loss)
	awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b)}' || fail "step $s: EP 4 $a, one rank $b"
done
for s in 3 4; do
	want=$(metric "$ref/traj.jsonl" $s loss)
	for f in ep2.jsonl one.jsonl; do
		got=$(metric $f $s loss)
		awk -v a="$got" -v b="$want" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b)}' ||
			fail "step $s: $f $got, uninterrupted $want"
	done
	echo "step $s: uninterrupted $want, resumed at EP 2 $(metric ep2.jsonl $s loss), on 1 rank $(metric one.jsonl $s loss)"
done
echo PASS
