#!/bin/sh
# Run `moec check` on one bad spec and compare its first diagnostic line with the spec's
#   # expect: <where>: error: <message>
# line, where <where> is LINE:COL in the spec itself, or FILE:LINE:COL for an error in
# another file (a preset, an HF config.json, a cluster file), or "--set:1:COL".
# A leading "# args: ..." line passes extra arguments (e.g. --set moe.top_k=9).
# The exit code must be 1 (spec error) and no sanitizer report may appear.
moec=$1
spec=$2
expect=$(sed -n 's/^# expect: //p' "$spec" | head -n 1)
args=$(sed -n 's/^# args: //p' "$spec" | head -n 1)
if [ -z "$expect" ]; then
  echo "FAIL: $spec has no '# expect:' line"
  exit 1
fi
case "$expect" in
  [0-9]*) expect="$spec:$expect" ;;
esac
err=$(mktemp)
# shellcheck disable=SC2086
"$moec" check "$spec" $args >/dev/null 2>"$err"
rc=$?
got=$(head -n 1 "$err")
if [ "$rc" -ne 1 ] || [ "$got" != "$expect" ] || grep -q "Sanitizer" "$err"; then
  echo "FAIL: $spec"
  echo "  exit code: $rc (want 1)"
  echo "  want: $expect"
  echo "  got:  $got"
  cat "$err"
  rm -f "$err"
  exit 1
fi
cat "$err"
rm -f "$err"
echo "PASS: $spec"
