#!/usr/bin/env bash
# test.sh - install everything, build, and run every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --peers
scripts/build.sh
# Open MPI refuses to start as root unless told this is intended (CI runs as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Single-node MPI launch settings for the mpirun-based tests (docs/CLUSTER.md):
# without a running munge daemon PMIx's munge plugin retries ~2 s per launch,
# UCX probes for InfiniBand for ~0.2 s, mpirun's PCI scan, PMIx's
# shared-memory job store and hwloc's plugins add ~45 ms. A caller's values win; the Slurm test
# drops the PMIx ones again (it runs munge, and srun's PMIx server chooses).
export PMIX_MCA_psec="${PMIX_MCA_psec-native}" OMPI_MCA_pml="${OMPI_MCA_pml-ob1}"
export PMIX_MCA_gds="${PMIX_MCA_gds-hash}" HWLOC_COMPONENTS="${HWLOC_COMPONENTS--pci,-linuxio}"
export HWLOC_PLUGINS_BLACKLIST="${HWLOC_PLUGINS_BLACKLIST-hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml}"
# With arguments: those tests, release build only. Without: every test once
# (tests/sanitize/run.sh says what runs where): here the suites that cannot
# run sanitized (peer, python: an uninstrumented Python; fuzz: its own
# sanitized clang build) and the kernels, then everything else under
# AddressSanitizer + UndefinedBehaviorSanitizer, leaks checked, in its own
# build folder. PQ_SANITIZE=0 runs everything here instead, unsanitized.
if [ $# -gt 0 ]; then
  meson test -C build --print-errorlogs --num-processes 2 "$@"
elif [ "${PQ_SANITIZE:-1}" = 0 ]; then
  meson test -C build --print-errorlogs --num-processes 2
else
  meson test -C build --print-errorlogs --num-processes 2 --suite peer --suite python --suite fuzz --suite kernels
  tests/sanitize/run.sh
fi
