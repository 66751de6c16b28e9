#!/usr/bin/env bash
# bench_h5_checksums.sh - what the HDF5 checksums (docs/FORMAT.md, format 3)
# cost: `quantize` (int8) of a synthetic esm2_t33_650M with an OLD build
# (format 2, no checksums) and a NEW one, interleaved; then, on the NEW file,
# `inspect` (reads every dataset) and `score` (2 short sequences: the load
# dominates) with and without --no-verify-checksums, and the OLD build's score
# of its own file; last, every dataset of both files read through HDF5 with
# its checksum verification on and off (h5_read_all.c). Wall seconds of every
# run; compare the best of each.
#   scripts/bench/bench_h5_checksums.sh OLD/proteus NEW/proteus [ROUNDS] [ARCH]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
old="$1" new="$2" rounds="${3:-3}" arch="${4:-esm2_t33_650M_UR50D}"
fasta="$here/data/proteins/eval_sample.fasta"
tmp="$(mktemp -d /tmp/pq_bench_h5.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
"$new" synth --arch "$arch" --seed 1 --out "$tmp/m.safetensors" > /dev/null
t() { # label, command...: prints the wall seconds
  local label="$1"; shift
  local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N)
  printf '%-40s %8.3f s\n' "$label" "$(echo "$e - $s" | bc)"
}
for i in $(seq "$rounds"); do
  for side in old new; do
    b=$old; [[ $side == new ]] && b=$new
    rm -f "$tmp/$side.h5"
    t "quantize $side" "$b" quantize --model "$tmp/m.safetensors" --out "$tmp/$side.h5" --precision int8
  done
done
ls -l "$tmp/old.h5" "$tmp/new.h5" | awk '{print $5, $9}'
score=(--fasta "$fasta" --max-seqs 2 --max-length 60)
for i in $(seq "$rounds"); do
  t "inspect new (verify)" "$new" inspect "$tmp/new.h5"
  t "inspect new --no-verify-checksums" "$new" inspect "$tmp/new.h5" --no-verify-checksums
  t "score new (verify)" "$new" score --model "$tmp/new.h5" "${score[@]}"
  t "score new --no-verify-checksums" "$new" score --model "$tmp/new.h5" "${score[@]}" --no-verify-checksums
  t "score old" "$old" score --model "$tmp/old.h5" "${score[@]}"
done
cc -O2 -o "$tmp/h5_read_all" "$here/scripts/bench/h5_read_all.c" $(pkg-config --cflags --libs hdf5)
echo "new (chunked, Fletcher-32):"; "$tmp/h5_read_all" "$tmp/new.h5" "$rounds"
echo "old (contiguous, no checksum):"; "$tmp/h5_read_all" "$tmp/old.h5" "$rounds"
