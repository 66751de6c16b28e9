#!/usr/bin/env bash
# deps.sh - install what Proteus needs on Debian 12 (as root), idempotently and
# quietly when everything is already there.
#   scripts/deps.sh            build + run dependencies
#   scripts/deps.sh --peers    also the Python peers used by tests and benchmarks
#                              (a virtualenv in .venv, versions pinned)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

pkgs=(build-essential meson ninja-build pkg-config
      libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
      libprotobuf-c-dev protobuf-c-compiler libzmq3-dev libcmocka-dev
      libopenblas-dev libjansson-dev zlib1g-dev libssl-dev
      libxxhash-dev xxhash  # XXH3-128 source digest (optional: SHA-256 only without it); xxhsum for its tests
      man-db)
peers=0
[ "${1:-}" = "--peers" ] && peers=1
if [ $peers = 1 ]; then
  pkgs+=(python3 python3-venv python3-pip python3-torch python3-h5py python3-numpy
         slurmctld slurmd slurm-client munge
         clang libclang-rt-dev)  # libFuzzer for tests/fuzz (scripts/fuzz.sh)
  pkgs+=(chromium)  # headless rendering of `proteus report` (tests/report)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ $peers = 1 ]; then
  # Python peers (tests and benchmarks only; Proteus itself never needs Python).
  venv="$here/.venv"
  req="$here/scripts/requirements-peers.txt"
  stamp="$venv/.installed-$(sha256sum "$req" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "deps: preparing $venv"
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    touch "$stamp"
  fi
fi
