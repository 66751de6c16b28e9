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
bin=build/cli/proteus
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
$bin synth --arch esm2_t12_35M_UR50D --seed 1 --out "$out/t12_synth.safetensors"
$bin quantize --model "$out/t12_synth.safetensors" --out "$out/t12_int8.h5" \
     --precision int8 --per-channel --symmetric
$bin inspect "$out/t12_int8.h5" > "$out/inspect.txt"
head -n 8 "$out/inspect.txt"

# The real part: the bundled ESM-2 trained on real proteins, static int8 (W8A8)
# calibrated automatically on the bundled sample, then what it costs and gains on
# held-out real sequences.
m=data/models/esm2_t6_8M_proteus_mlm.f16.safetensors
$bin quantize --model "$m" --out "$out/t6_w8a8.h5" --per-channel --scheme static -q
$bin evaluate --model "$out/t6_w8a8.h5" --reference "$m" \
     --fasta data/proteins/eval_sample.fasta --max-seqs 60
