#!/usr/bin/env bash
# run.sh - the test suites again in an AddressSanitizer + UndefinedBehaviorSanitizer
# build (build-asan, gcc, -Db_sanitize=address,undefined), leaks checked.
# Any report fails the test that triggered it: ASan aborts, UBSan halts on
# the first error (-fno-sanitize-recover=all and halt_on_error=1), LeakSanitizer
# reports at exit with the library-only suppressions of lsan.supp.
#   tests/sanitize/run.sh [meson test arguments]   (default: the suites below)
# Called by scripts/test.sh after the ordinary run (PQ_SANITIZE=0 skips it).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
b="${PQ_ASAN_BUILD:-$root/build-asan}"
if [ ! -f "$b/build.ninja" ]; then
  meson setup "$b" "$root" --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fno-sanitize-recover=all >"$root/build-asan.setup.log" 2>&1 ||
    { cat "$root/build-asan.setup.log" >&2; exit 1; }
  rm -f "$root/build-asan.setup.log"
fi
ninja -C "$b" >/dev/null
# allocator_may_return_null: a test of an absurd allocation expects NULL and
# PQ_ERR_RESOURCE, as from glibc, not ASan's own abort.
# fast_unwind_on_malloc=0: Open MPI's and HDF5's libraries have no frame
# pointers, so only the slow unwinder reaches the frames (ompi_mpi_init, ...)
# that lsan.supp names; the fast one stops inside the library.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1:print_summary=1:fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$root/tests/sanitize/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
# The peer suites compare numbers with PyTorch (the same C code the other
# suites run, under a Python that is not instrumented) and the fuzz suite has
# its own sanitized build: both are left out here. By default (CI) the unit
# and kernel suites and the MPI byte-identity test run, which keeps CI under
# its 30 minutes on two cores; `run.sh --suite integration --suite mpi` runs
# the rest of the end-to-end suites under the sanitizers (docs/PERFORMANCE.md,
# Reliability, gives the last full run).
run() { meson test -C "$b" --no-rebuild --print-errorlogs --num-processes 2 --timeout-multiplier 4 "$@"; }
if [ $# -gt 0 ]; then
  run "$@"
else
  run --suite unit --suite kernels
  run mpi_ranks
fi
