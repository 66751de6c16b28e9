#!/usr/bin/env bash
# run.sh - the test suites in an AddressSanitizer + UndefinedBehaviorSanitizer
# build (build-asan, gcc, -Db_sanitize=address,undefined), leaks checked.
# Any report fails the run (and, but for a masked exit status, the test that
# triggered it): ASan aborts, UBSan halts on the first error
# (-fno-sanitize-recover=all and halt_on_error=1), and LeakSanitizer checks
# every process at its end (the proteus binary, which leaves through _exit,
# calls the check itself in this build) with the library-only suppressions
# of lsan.supp.
#   tests/sanitize/run.sh [meson test arguments]   (default: the suites below)
# Called by scripts/test.sh after the ordinary run (PQ_SANITIZE=0 skips it).
#
# What runs where (CI, scripts/test.sh):
#   here, sanitized: unit, kernels, integration and mpi, every test of them
#     (the MPI ones too, under mpirun and under the one-node Slurm); they run
#     only here, as running them again in the release build would find
#     nothing new;
#   release build only (scripts/test.sh): the peer and python suites, which
#     load PyTorch and friends into a Python that is not instrumented (the
#     code they compare runs here in the integration suites), the fuzz suite,
#     which has its own clang ASan + UBSan + libFuzzer build (scripts/fuzz.sh),
#     and the kernels suite again, for the code the release build's
#     optimisation makes of the SIMD kernels.
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
# The unwinder: Open MPI's and HDF5's libraries have no frame pointers, and
# MPI_Finalize unloads Open MPI's components (their frames are then "unknown
# module"), so ASan's default fast unwinder records no frame of an Open MPI
# leak that a suppression could name. What MPI_Init and MPI_Finalize leave is
# not counted in this build (worker/mpi_lsan.c), which covers a process that
# starts MPI alone (a singleton). The ranks that mpirun or srun starts also
# run Open MPI's progress thread (libevent), whose blocks only the slow
# unwinder (fast_unwind_on_malloc=0) follows down to event_base_loop; mpirun
# gives them these options instead (mca_base_env_list; the Slurm tests do
# the same for srun). The slow unwinder on every malloc is most of ASan's
# cost: 0.77 s of CPU for a singleton quantize of t6 against 0.19 s with the
# fast one (0.07 s unsanitized).
# log_path: every report also goes to a file of its own, and any file there
# fails the run at the end: a test that only looks at exit statuses could
# miss one (a rank's abort hidden behind another rank's status, a report of
# a process whose output a test keeps to itself).
reports="$b/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
opts="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1:print_summary=1:log_path=$reports/asan"
export ASAN_OPTIONS="$opts"
export OMPI_MCA_mca_base_env_list="ASAN_OPTIONS=$opts:fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$root/tests/sanitize/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
st=0
run() { meson test -C "$b" --no-rebuild --print-errorlogs --num-processes 2 --timeout-multiplier 4 "$@"; }
if [ $# -gt 0 ]; then
  run "$@" || st=$?
else
  # Most end-to-end tests are is_parallel: false (they use both cores, or
  # time a kill), so one meson run takes them one at a time while much of
  # each is launching, waiting or writing. Two runs side by side, each one
  # test at a time, pair an MPI test with a single-process one: the MPI
  # suite (ports, Slurm, session kills stay among themselves) beside the
  # rest. Each keeps its own log (--logbase). The MPI tests of the suite
  # mpi_beside (no Slurm, no timed kill) go on the second side after the
  # rest, so that the two sides take about as long.
  run --suite mpi --no-suite mpi_beside --logbase testlog-mpi &
  mpi_pid=$!
  run --suite unit --suite kernels --suite integration --no-suite mpi --logbase testlog-rest || st=$?
  run --suite mpi_beside --logbase testlog-beside || st=$?
  wait "$mpi_pid" || st=$?
fi
for f in "$reports"/*; do
  [ -e "$f" ] || continue
  echo "sanitizer report $f:" >&2
  cat "$f" >&2
  st=1
done
exit $st
