# lib.sh - shared by the trainer tests: fail, a field of the metrics file, the loss of a step.
fail() {
	echo "FAIL: $*"
	exit 1
}

# within_plan BUILD_LOG: moec build did not find the trainer's arenas larger than moec plan's
# estimate of them (compiler/step.c warns: the plan's memory verdict would be optimistic)
within_plan() {
	if grep -q "exceed moec plan" "$1"; then
		fail "$(grep "exceed moec plan" "$1")"
	fi
}

# metric FILE STEP KEY: the value of KEY in the record of STEP in a metrics .jsonl
metric() {
	grep "^{\"step\":$2," "$1" | tail -1 | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"
}

# last_step FILE: the highest step recorded
last_step() {
	grep -o '^{"step":[0-9]*' "$1" 2>/dev/null | tail -1 | sed 's/.*://'
}

# same_tensors A B: two --dump files hold the same tensors bit for bit (names, shapes and
# bytes); their metadata, which names the spec each trainer was built from, may differ.
# On a difference, names the first tensor that differs.
same_tensors() {
	for f in "$1" "$2"; do
		n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
		[ -n "$n" ] || fail "$f: not a safetensors file"
		head -c $((8 + n)) "$f" | tail -c "$n" | sed 's/"__metadata__":{[^}]*},//' >"$f.header"
		tail -c +$((9 + n)) "$f" >"$f.data"
	done
	cmp -s "$1.header" "$2.header" || fail "$1 and $2 hold different tensors or shapes"
	at=$(cmp "$1.data" "$2.data" | sed -n 's/.* byte \([0-9]*\).*/\1/p')
	# the tensor whose data_offsets [begin, end) hold that byte (cmp counts from 1)
	name=$(grep -o '"[^"]*":{"dtype":"[A-Z0-9]*","shape":\[[0-9,]*\],"data_offsets":\[[0-9]*,[0-9]*\]}' "$1.header" |
		sed 's/^"\([^"]*\)".*data_offsets":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2 \3/' |
		awk -v at="${at:-0}" '$2 < at && at <= $3 {print $1; exit}')
	rm -f "$1.data" "$2.data" "$1.header" "$2.header"
	[ -z "$at" ] || fail "$1 and $2 differ from data byte $at (tensor ${name:-?})"
}
