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
