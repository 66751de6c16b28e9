#!/usr/bin/env bash
# test.sh - install everything, build, and run every test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --peers
scripts/build.sh
# Open MPI refuses to start as root unless told this is intended (CI runs as root).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
meson test -C build --print-errorlogs --num-processes 2 "$@"
