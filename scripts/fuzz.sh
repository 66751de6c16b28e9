#!/usr/bin/env bash
# fuzz.sh - build (once, in build-fuzz with clang, ASan and UBSan) and run one
# libFuzzer harness of tests/fuzz.
#   scripts/fuzz.sh HARNESS SECONDS [libFuzzer options...]
# HARNESS: safetensors st_index fasta config recipe pt msg monitor h5. The seed corpus is
# tests/fuzz/corpus/HARNESS (read only); what the run finds new goes to
# build-fuzz/corpus/HARNESS, a crashing input to build-fuzz/artifacts/HARNESS/.
# Exit status: 0 no finding, 77 clang's libFuzzer is not installed (the test
# suite reports a skip), anything else a finding or a build failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 2 ] || { echo "usage: $0 HARNESS SECONDS [libFuzzer options...]" >&2; exit 2; }
h="$1" secs="$2"
shift 2
[ -f "$root/tests/fuzz/fuzz_$h.c" ] || { echo "fuzz: no harness '$h' (tests/fuzz/fuzz_$h.c)" >&2; exit 2; }
bdir="${PQ_FUZZ_BUILD:-$root/build-fuzz}"
mkdir -p "$bdir"

probe="$bdir/.probe"
if ! command -v clang >/dev/null ||
   ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; return (int)n * 0; }' |
     clang -fsanitize=fuzzer,address,undefined -x c - -o "$probe" 2>/dev/null; then
  echo "fuzz: SKIP: clang with libFuzzer (-fsanitize=fuzzer) is not installed (scripts/deps.sh installs clang)"
  exit 77
fi

# In the test suite (PQ_FUZZ_CI=1), a harness with findings not fixed yet is
# a skip that names them: they are known, listed and kept as reproducers.
if [ "${PQ_FUZZ_CI:-0}" = 1 ] && [ -s "$root/tests/fuzz/findings/$h/OPEN" ]; then
  echo "fuzz: SKIP: $h has open findings, listed in tests/fuzz/findings/$h/OPEN:"
  cat "$root/tests/fuzz/findings/$h/OPEN"
  exit 77
fi

# One build for every harness: the first caller builds, the others wait.
(
  flock 9
  if [ ! -f "$bdir/build.ninja" ]; then
    CC=clang meson setup "$bdir" "$root" --buildtype=debugoptimized -Dfuzz=true -Dtests=disabled \
      -Dcuda=disabled -Db_sanitize=address,undefined -Db_lundef=false \
      -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer' >"$bdir/setup.log" 2>&1 ||
      { cat "$bdir/setup.log" >&2; exit 1; }
  fi
  ninja -C "$bdir" "tests/fuzz/fuzz_$h" >"$bdir/ninja_$h.log" 2>&1 || { cat "$bdir/ninja_$h.log" >&2; exit 1; }
) 9>"$bdir/.lock"

work="$bdir/corpus/$h" art="$bdir/artifacts/$h"
mkdir -p "$work" "$art"
seeds="$root/tests/fuzz/corpus/$h"
export ASAN_OPTIONS="${ASAN_OPTIONS-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS-suppressions=$root/tests/sanitize/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS-halt_on_error=1:print_stacktrace=1}"
# h5: HDF5's free lists leave more mallocs than frees after most inputs, and
# libFuzzer would rerun each such input and scan the heap (5x the time):
# LeakSanitizer checks at the exit of the run (of each job with -fork) instead.
extra=()
[ "$h" = h5 ] && extra=(-detect_leaks=0)
# -timeout: one input running longer is a hang; -rss_limit_mb: a memory blow-up
# is a finding too; -malloc_limit_mb: so is one allocation a file can ask for.
echo "fuzz: $h for $secs s (corpus $work, seeds $seeds)"
exec "$bdir/tests/fuzz/fuzz_$h" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 \
  -malloc_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$art/" "${extra[@]}" "$@" "$work" "$seeds"
