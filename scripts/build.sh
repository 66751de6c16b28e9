#!/usr/bin/env bash
# build.sh - configure (once) and build Proteus into ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=release >/dev/null
fi
ninja -C build >/dev/null
echo "build: build/cli/proteus"
