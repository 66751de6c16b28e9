#!/usr/bin/env bash
# demo.sh - the main job on a built-in default: install, build, make a small
# synthetic ESM-2 (esm2_t12_35M shape), quantize it to int8 per channel, and
# print the summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
out=out/demo
mkdir -p "$out"
bin=build/coordinator/proteus
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
$bin synth --arch esm2_t12_35M_UR50D --seed 1 --out "$out/t12_synth.safetensors"
$bin quantize --model "$out/t12_synth.safetensors" --out "$out/t12_int8.h5" \
     --precision int8 --per-channel --symmetric
$bin inspect "$out/t12_int8.h5" | head -n 8
