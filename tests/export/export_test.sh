#!/bin/sh
# export_test.sh MOEC ST_SAME WORK - `moec export` end to end on the tiny example: build,
# train 2 steps, export, and check that
#   - OUT/model.safetensors holds exactly the checkpoint's tensors, bit for bit, and
#     OUT/config.json is the build's;
#   - the trainer reads OUT back (--init-from) into exactly those weights (its --dump);
#   - a checkpoint of another spec is refused with a message naming both files (--force
#     exports it anyway), a build without config.json is refused naming it;
#   - --dtype bf16 gives BF16 tensors rounded to nearest even and torch_dtype bfloat16,
#     which the trainer reads back too.
# The kernel cache is $MOEC_CACHE_DIR (the build tree's). Loading OUT in transformers is
# checked by hand (CI has no torch): see compiler/export.h.
moec=$1 st_same=$2 work=$3
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$work" && mkdir -p "$work" || fail "cannot create $work"
build=$work/build ck=$work/ck out=$work/out

"$moec" build examples/tiny_qwen3_moe.yaml -o "$build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "moec build"; }
[ -x "$build/train" ] || fail "no trainer in $build"
[ -f "$build/config.json" ] || fail "moec build wrote no $build/config.json"
grep -q '"Qwen3MoeForCausalLM"' "$build/config.json" || fail "$build/config.json names no Qwen3MoeForCausalLM"

mkdir -p "$ck" # the trainer opens --metrics before it creates --ckpt-dir
"$build/train" --steps 2 --save-every 0 --ckpt-dir "$ck" --metrics "$ck/m.jsonl" --quiet >"$work/train.log" 2>&1 ||
	{ cat "$work/train.log"; fail "train --steps 2"; }
step=$ck/step_00000002
[ -f "$step/model.safetensors" ] || fail "no checkpoint $step"

# The checkpoint root: its newest complete step is exported.
"$moec" export "$build" "$ck" -o "$out" >"$work/export.log" 2>&1 || { cat "$work/export.log"; fail "moec export"; }
grep -q "step_00000002 (step 2)" "$work/export.log" || { cat "$work/export.log"; fail "export did not take step 2"; }
cmp -s "$build/config.json" "$out/config.json" || fail "$out/config.json is not $build/config.json"
"$st_same" "$step/model.safetensors" "$out/model.safetensors" || fail "exported tensors differ from the checkpoint's"

# A step directory named directly gives the same file, byte for byte.
"$moec" export "$build" "$step" -o "$work/out_step" >/dev/null 2>&1 || fail "moec export of a step dir"
cmp -s "$out/model.safetensors" "$work/out_step/model.safetensors" || fail "exports of the root and the step dir differ"

# Reloading: the trainer initializes from OUT; with no steps its dump holds those weights.
"$build/train" --init-from "$out" --steps 0 --no-resume --ckpt-dir "$work/y" --metrics /dev/null --quiet \
	--dump "$work/reload.safetensors" >"$work/reload.log" 2>&1 || { cat "$work/reload.log"; fail "train --init-from $out"; }
"$st_same" --prefix adamw. "$out/model.safetensors" "$work/reload.safetensors" || fail "reloaded weights differ"

# Another spec's build: refused, naming both files and --force.
"$moec" build examples/tiny_qwen3_moe.yaml --set train.seed=7 --kernels-only -o "$work/other" >/dev/null 2>&1 ||
	fail "moec build of the other spec"
"$moec" export "$work/other" "$ck" -o "$work/wrong" >"$work/wrong.log" 2>&1
rc=$?
[ $rc -eq 1 ] || { cat "$work/wrong.log"; fail "export of another spec's checkpoint exited $rc, want 1"; }
for want in "$step/optimizer.safetensors" "$work/other/manifest.json" "--force"; do
	grep -qF -- "$want" "$work/wrong.log" || { cat "$work/wrong.log"; fail "the mismatch message does not name $want"; }
done
[ ! -e "$work/wrong/model.safetensors" ] || fail "a refused export wrote $work/wrong/model.safetensors"
"$moec" export "$work/other" "$ck" -o "$work/forced" --force >/dev/null 2>&1 || fail "export --force"
"$st_same" "$step/model.safetensors" "$work/forced/model.safetensors" || fail "forced export differs"

# A build without config.json: refused, naming it.
mkdir -p "$work/noconf" && cp "$build/manifest.json" "$work/noconf/" || fail "cannot set up $work/noconf"
if "$moec" export "$work/noconf" "$ck" -o "$work/x" >"$work/noconf.log" 2>&1; then fail "export without config.json succeeded"; fi
grep -qF "$work/noconf/config.json" "$work/noconf.log" || { cat "$work/noconf.log"; fail "message does not name config.json"; }

# An empty checkpoint root: refused.
mkdir -p "$work/empty"
if "$moec" export "$build" "$work/empty" -o "$work/x" >"$work/empty.log" 2>&1; then fail "export of an empty dir succeeded"; fi
grep -q "holds no checkpoint" "$work/empty.log" || { cat "$work/empty.log"; fail "empty dir message"; }

# bf16: every F32 tensor rounded to nearest even, torch_dtype bfloat16, and readable back.
"$moec" export "$build" "$ck" -o "$work/out16" --dtype bf16 >"$work/out16.log" 2>&1 || { cat "$work/out16.log"; fail "export --dtype bf16"; }
"$st_same" --bf16 "$step/model.safetensors" "$work/out16/model.safetensors" || fail "bf16 export is not the rounded checkpoint"
grep -q '"torch_dtype": "bfloat16"' "$work/out16/config.json" || fail "$work/out16/config.json: torch_dtype is not bfloat16"
[ "$(grep -vc torch_dtype "$work/out16/config.json")" -eq "$(grep -vc torch_dtype "$build/config.json")" ] ||
	fail "the bf16 config.json differs in more than torch_dtype"
"$build/train" --init-from "$work/out16" --steps 0 --no-resume --ckpt-dir "$work/y16" --metrics /dev/null --quiet \
	>"$work/reload16.log" 2>&1 || { cat "$work/reload16.log"; fail "train --init-from the bf16 export"; }

# Sharded as transformers shards: --max-shard-size 1MB gives model-0000K-of-0000N files and
# an index; the trainer reads the shards back into exactly the checkpoint's weights; an
# unsharded export into the same directory removes the index again.
"$moec" export "$build" "$ck" -o "$work/sharded" --max-shard-size 1MB >"$work/sharded.log" 2>&1 ||
	{ cat "$work/sharded.log"; fail "export --max-shard-size 1MB"; }
nshards=$(ls "$work/sharded" | grep -c '^model-0000[0-9]-of-0000[0-9]\.safetensors$')
[ "$nshards" -ge 3 ] || fail "$nshards shards for a 4 MB model at 1 MB each"
[ -f "$work/sharded/model.safetensors.index.json" ] && [ ! -e "$work/sharded/model.safetensors" ] ||
	fail "sharded export: index or a stale model.safetensors"
grep -q '"total_size": ' "$work/sharded/model.safetensors.index.json" || fail "index without total_size"
"$build/train" --init-from "$work/sharded" --steps 0 --no-resume --ckpt-dir "$work/ys" --metrics /dev/null --quiet \
	--dump "$work/reload_sharded.safetensors" >"$work/reload_sharded.log" 2>&1 ||
	{ cat "$work/reload_sharded.log"; fail "train --init-from the sharded export"; }
"$st_same" --prefix adamw. "$step/model.safetensors" "$work/reload_sharded.safetensors" || fail "sharded weights differ"
"$moec" export "$build" "$ck" -o "$work/sharded" >/dev/null 2>&1 || fail "unsharded export over a sharded one"
[ -f "$work/sharded/model.safetensors" ] && [ ! -e "$work/sharded/model.safetensors.index.json" ] ||
	fail "unsharded export left the index behind"
! ls "$work/sharded" | grep -q '^model-0' || fail "unsharded export left shards behind"
if "$moec" export "$build" "$ck" -o "$work/x" --max-shard-size 12parsecs >/dev/null 2>&1; then fail "a bad size was accepted"; fi
echo "PASS: export: $(head -n 1 "$work/export.log")"
