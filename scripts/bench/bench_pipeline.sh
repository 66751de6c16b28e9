#!/usr/bin/env bash
# bench_pipeline.sh - end-to-end `proteus quantize` figures: wall time, GB/s of
# checkpoint input and peak RSS, on synthetic esm2_t30_150M (593 MB) and, with
# --big, esm2_t36_3B (11.4 GB, written to $BENCH_DIR; needs ~25 GB of disk).
#   scripts/bench/bench_pipeline.sh [--big]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build/cli/proteus
D=${BENCH_DIR:-/tmp/proteus-bench}
mkdir -p "$D"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

measure() { # name model out args...
  local name=$1 model=$2 out=$3; shift 3
  rm -f "$out"
  /usr/bin/time -f "%e %M" -o "$D/time.txt" "$B" quantize --model "$model" --out "$out" -q "$@" >/dev/null
  read -r wall rss_kb < "$D/time.txt"
  local bytes; bytes=$(stat -c %s "$model")
  awk -v n="$name" -v w="$wall" -v r="$rss_kb" -v b="$bytes" -v o="$(stat -c %s "$out")" 'BEGIN {
    printf "%-34s wall %7.2f s  %6.2f GB/s  peak RSS %7.1f MB  in %.2f GB -> out %.2f GB\n",
           n, w, b / w / 1e9, r / 1024, b / 1e9, o / 1e9 }'
}

[ -f "$D/t30.safetensors" ] || $B synth --arch esm2_t30_150M_UR50D --seed 1 --out "$D/t30.safetensors" >/dev/null
measure "t30_150M int8 per-channel" "$D/t30.safetensors" "$D/t30_int8.h5" --per-channel
measure "t30_150M int8 per-tensor" "$D/t30.safetensors" "$D/t30_int8t.h5"
measure "t30_150M int4 group128 asym" "$D/t30.safetensors" "$D/t30_int4.h5" --precision int4 --group-size 128 --asymmetric
measure "t30_150M int8 per-channel 1 thread" "$D/t30.safetensors" "$D/t30_int8_1t.h5" --per-channel --threads 1

if [ "${1:-}" = "--big" ]; then
  [ -f "$D/t36.safetensors" ] || $B synth --arch esm2_t36_3B_UR50D --seed 1 --out "$D/t36.safetensors" >/dev/null
  # drop the page cache's copy so the run reads from disk like a first run would
  sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true
  measure "t36_3B int8 per-channel" "$D/t36.safetensors" "$D/t36_int8.h5" --per-channel
fi
