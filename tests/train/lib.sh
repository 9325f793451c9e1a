# lib.sh - shared by the trainer tests: fail, a field of the metrics file, the loss of a step.
fail() {
	echo "FAIL: $*"
	exit 1
}

# metric FILE STEP KEY: the value of KEY in the record of STEP in a metrics .jsonl
metric() {
	grep "^{\"step\":$2," "$1" | tail -1 | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"
}

# last_step FILE: the highest step recorded
last_step() {
	grep -o '^{"step":[0-9]*' "$1" 2>/dev/null | tail -1 | sed 's/.*://'
}
