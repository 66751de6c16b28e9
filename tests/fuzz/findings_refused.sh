#!/usr/bin/env bash
# findings_refused.sh - the fixed fuzz findings stay fixed: `proteus inspect`
# on each reproducer (tests/fuzz/findings/HARNESS/*) ends within 30 s with the
# format error's exit status (4) and one "proteus: format error: ..." line
# that says why, never a signal, a hang or a success.
#   findings_refused.sh PROTEUS FILE...
set -uo pipefail
proteus="$1"
shift
fail=0
for f in "$@"; do
  err="$(timeout 30 "$proteus" inspect "$f" 2>&1 >/dev/null)"
  rc=$?
  if [ "$rc" -ne 4 ] || ! grep -q '^proteus: format error: .' <<<"$err"; then
    echo "FAIL: $(basename "$f"): exit $rc (want 4, a format error), stderr: $err" >&2
    fail=1
  else
    echo "ok: $(basename "$f"): $(tail -n 1 <<<"$err")"
  fi
done
exit "$fail"
