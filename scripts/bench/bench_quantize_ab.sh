#!/usr/bin/env bash
# bench_quantize_ab.sh - two builds of `proteus quantize --per-channel --threads 2 -v`
# on one checkpoint (page cache warm), interleaved round by round, for a machine that
# other jobs share: each run's wall time, CPU time (user + sys), the load average, peak
# RSS and the -v phases; at the end whether the two outputs hold the same data (h5diff).
#   scripts/bench/bench_quantize_ab.sh OLD_PROTEUS NEW_PROTEUS MODEL ROUNDS [quantize options]
# Both write OUT under the same name (so their provenance is the same); it is kept as
# old.h5 and new.h5 in $BENCH_DIR.
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,8p "$0"; exit 2; }
OLD=$1 NEW=$2 M=$3 R=$4
shift 4
D=${BENCH_DIR:-/tmp/proteus-bench}
mkdir -p "$D"
cat "$M" >/dev/null # warm
for i in $(seq 1 "$R"); do
  for side in old new; do
    b=$OLD
    [ "$side" = new ] && b=$NEW
    rm -f "$D/q.h5"
    out=$(/usr/bin/time -f "TIME %e %U %S %M" "$b" quantize --model "$M" --out "$D/q.h5" --per-channel \
          --threads 2 -v "$@" 2>&1)
    read -r _ wall us sy rss <<< "$(grep '^TIME' <<< "$out")"
    phases=$(grep 'debug: phases: MPI_Init' <<< "$out" | sed 's/.*open+plan/open+plan/; s/send\/receive [0-9.]* s, //')
    awk -v i="$i" -v s="$side" -v w="$wall" -v u="$us" -v y="$sy" -v r="$rss" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
        -v p="$phases" 'BEGIN { printf "%d %s wall %7.2f s cpu %6.2f s load %5s rss %4d MiB | %s\n", i, s, w, u + y, l,
                                r / 1024, p }'
    mv "$D/q.h5" "$D/$side.h5"
  done
done
if command -v h5diff >/dev/null; then
  h5diff "$D/old.h5" "$D/new.h5" && echo "old.h5 and new.h5 hold the same data"
fi
