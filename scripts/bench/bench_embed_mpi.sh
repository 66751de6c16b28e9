#!/usr/bin/env bash
# bench_embed_mpi.sh - `proteus embed` on 1 and 2 MPI ranks, one thread per
# rank, interleaved, on the first N records of a FASTA: each run's wall
# time and, per rank, peak RSS and CPU seconds (GNU time); the outputs are
# compared byte for byte. Writes only under a temporary folder it removes.
#
#   bash scripts/bench/bench_embed_mpi.sh BUILD MODEL.h5 FASTA N [ROUNDS] [embed options]
set -euo pipefail
build="${1:?usage: bench_embed_mpi.sh BUILD MODEL FASTA N [ROUNDS] [options]}"
model="$(readlink -f "${2:?model}")"
fasta="$(readlink -f "${3:?fasta}")"
n="${4:?number of records}"
rounds="${5:-2}"
shift $(( $# < 5 ? $# : 5 ))
proteus="$(readlink -f "$build/cli/proteus")"
tmp="$(mktemp -d /tmp/pq_bench_embed.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
awk -v n="$n" '/^>/{k++} k>n{exit} {print}' "$fasta" > "$tmp/in.fasta"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
for r in $(seq "$rounds"); do
  for ranks in 1 2; do
    t0=$(date +%s.%N)
    mpirun -n "$ranks" /usr/bin/time -f "  rank: peak RSS %M kB, user %U s, sys %S s" \
      "$proteus" embed --model "$model" --fasta "$tmp/in.fasta" --out "$tmp/e$ranks.h5" --threads 1 --quiet "$@" \
      > "$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    t1=$(date +%s.%N)
    echo "round $r, -n $ranks: wall $(echo "$t1 - $t0" | bc) s"
    grep "rank:" "$tmp/log"
  done
  cmp "$tmp/e1.h5" "$tmp/e2.h5" && echo "  outputs identical"
done
