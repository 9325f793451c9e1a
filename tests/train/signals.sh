#!/bin/sh
# signals.sh TRAIN WORK - SIGTERM mid-run saves a checkpoint at the next step boundary and
# exits 0, and the run resumes from it; SIGKILL at random moments while checkpoints are
# being written every step never leaves the directory without a loadable checkpoint.
. "$(dirname "$0")/lib.sh"
train=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1

"$train" --quiet --steps 100000 --save-every 0 --ckpt-dir term --metrics term.jsonl &
pid=$!
i=0
while [ "$(last_step term.jsonl)" = "" ] || [ "$(last_step term.jsonl)" -lt 3 ]; do
	sleep 0.1; i=$((i + 1)); [ $i -lt 600 ] || fail "no progress"
done
kill -TERM $pid
wait $pid; rc=$?
[ $rc -eq 0 ] || fail "SIGTERM: exit status $rc, expected 0"
stop=$(last_step term.jsonl)
[ -d "term/step_$(printf %08d "$stop")" ] || fail "no checkpoint for step $stop after SIGTERM: $(ls term)"
grep -q '"event":"stop"' term.jsonl || fail "no stop event in the metrics"
"$train" --steps $((stop + 2)) --save-every 0 --ckpt-dir term --metrics term.jsonl >resume.out || fail "resume after SIGTERM"
grep -q "resumed from term/step_$(printf %08d "$stop") at step $stop" resume.out || fail "did not resume at $stop"

for delay in 0.3 0.45 0.6 0.75 0.9 1.05; do
	"$train" --quiet --steps 100000 --save-every 1 --keep 2 --ckpt-dir kill --metrics kill.jsonl &
	pid=$!
	sleep $delay
	kill -KILL $pid
	wait $pid 2>/dev/null
	ls kill | grep -q '^step_' || continue # killed before the first save
	last=$(ls kill | grep '^step_' | tail -1 | sed 's/step_0*//')
	"$train" --steps $((last + 1)) --save-every 0 --keep 2 --ckpt-dir kill --metrics kill.jsonl >kill.out 2>&1 ||
		fail "after SIGKILL at ${delay}s: resume failed: $(tail -2 kill.out)"
	grep -q "resumed from" kill.out || fail "after SIGKILL at ${delay}s: no resume"
done
echo PASS
