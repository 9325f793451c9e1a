#!/bin/sh
# first_write.sh MOEC WORK - a gradient's first write in an optimizer step overwrites it
# (compiler/step.c, step_grad_zeroed) instead of adding to a zeroed arena, and that changes
# no bit: each build of the tiny example trains three steps as generated and with
# --zero-all-grads (the whole arena zeroed every step, every write adding: the step before
# first writes), to the same losses and the same dump (the last step's gradients, the
# weights after AdamW). A gradient left stale from the previous step, or added twice, would
# move the second step's. Builds: as shipped (one micro-batch); three micro-batches with
# tied embeddings (the LM head overwrites, embedding_bwd adds) and a dense first layer (the
# dense MLP's grouped weight GEMMs); two micro-batches in bf16 under full recompute.
. "$(dirname "$0")/lib.sh"
moec=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
root=$OLDPWD

check() {
	bld=$1
	shift
	"$moec" build "$root/examples/tiny_qwen3_moe.yaml" -o "$bld" "$@" >"$bld.build.log" 2>&1 ||
		fail "moec build $bld: $(tail -3 "$bld.build.log")"
	for mode in first all; do
		flag=
		[ "$mode" = all ] && flag=--zero-all-grads
		"$bld/train" --device cpu --quiet --steps 3 --no-resume --no-save --metrics "$bld.$mode.jsonl" \
			--dump "$bld.$mode.safetensors" $flag >"$bld.$mode.out" 2>&1 ||
			fail "$bld ($mode): $(tail -3 "$bld.$mode.out")"
	done
	for s in 1 2 3; do
		a=$(metric "$bld.first.jsonl" $s loss) b=$(metric "$bld.all.jsonl" $s loss)
		[ -n "$a" ] && [ "$a" = "$b" ] || fail "$bld step $s: loss $a with first writes, $b zeroing all"
		a=$(metric "$bld.first.jsonl" $s grad_norm) b=$(metric "$bld.all.jsonl" $s grad_norm)
		[ -n "$a" ] && [ "$a" = "$b" ] || fail "$bld step $s: grad norm $a with first writes, $b zeroing all"
	done
	same_tensors "$bld.first.safetensors" "$bld.all.safetensors"
	echo "$bld: the same 3 steps (loss $(metric "$bld.first.jsonl" 3 loss)), gradients and weights"
}

check shipped
check accum3_tied_dense --set train.grad_accum=3 --set model.tie_embeddings=true --set model.first_k_dense=1
check accum2_bf16_full --set train.grad_accum=2 --set train.precision=bf16 --set train.recompute=full
echo PASS
