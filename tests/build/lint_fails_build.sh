#!/bin/sh
# lint_fails_build.sh MOEC WORK - `moec build` fails, naming the template's own file:line,
# when a template has an error, and when a CPU twin's signature differs from its kernel's.
# Works on copies of kernels/ (MOEC_KERNELS_DIR) so the real templates stay untouched.
moec=$1 work=$2
spec=examples/tiny_qwen3_moe.yaml
fails=0 passes=0
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }

# plant DIR: a fresh copy of kernels/ in $work/DIR
plant() { rm -rf "$work/$1" && mkdir -p "$work/$1" && cp -r kernels "$work/$1/kernels" || exit 1; }
# expect_failure NAME PATTERN: the build over $work/NAME/kernels exits 1 and its stderr
# has a line matching PATTERN (grep -E)
expect_failure() {
	MOEC_KERNELS_DIR="$work/$1/kernels" MOEC_CACHE_DIR="$work/cache" "$moec" build $spec -o "$work/$1/out" \
		>"$work/$1.out" 2>"$work/$1.err"
	rc=$?
	if [ "$rc" -ne 1 ]; then fail "$1: exit code $rc, want 1"; cat "$work/$1.err"; return; fi
	if grep -Eq "$2" "$work/$1.err"; then passes=$((passes + 1)); else
		fail "$1: no line matching '$2' in:"; cat "$work/$1.err"; fi
}

# 1. A template error: an undeclared name on line 14 of add.cu (after its 13-line header).
plant template_error
awk 'NR == 14 { print "static __device__ float planted(void) { return undeclared_thing; }" } { print }' \
	kernels/add.cu >"$work/template_error/kernels/add.cu"
expect_failure template_error "^$work/template_error/kernels/add.cu:14:[0-9]+: error: use of undeclared identifier 'undeclared_thing'"

# 2. A twin whose last parameter is int where the kernel has long.
plant twin_mismatch
sed 's/const act_t \*b, long n)/const act_t *b, int n)/' kernels/cpu/add.c >"$work/twin_mismatch/kernels/cpu/add.c"
cmp -s kernels/cpu/add.c "$work/twin_mismatch/kernels/cpu/add.c" && fail "the twin was not changed (add.c's signature moved?)"
expect_failure twin_mismatch "kernels/cpu/add.c:[0-9]+:[0-9]+: error: .*parameter 4"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
