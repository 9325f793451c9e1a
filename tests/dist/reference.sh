#!/bin/sh
# reference.sh MOEC WORK - the single-rank reference the layouts are compared with: the tiny
# example (4 rows per step), one step dumped, and the same with every token forced to
# experts 0 and 1 (for the zero-token test).
. "$(dirname "$0")/lib.sh"
moec=$1 work=$2
rm -rf "$work" && mkdir -p "$work" || exit 1
build_layout "$moec" "$work/one" 1 1 4
cd "$work" || exit 1
one/train --quiet --steps 1 --no-resume --ckpt-dir ck --metrics m.jsonl --dump ref.safetensors || fail "reference step"
MOERT_TEST_FORCE_EXPERTS=0,1 one/train --quiet --steps 1 --no-resume --ckpt-dir ckf --metrics mf.jsonl \
	--dump ref_forced.safetensors || fail "forced reference step"
one/train --quiet --steps 4 --no-resume --save-every 2 --ckpt-dir traj --metrics traj.jsonl || fail "reference trajectory"
echo PASS
