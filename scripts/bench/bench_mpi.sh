#!/usr/bin/env bash
# bench_mpi.sh - RTN quantization of a synthetic ESM-2 150M on 2 MPI ranks vs
# 1 rank: wall time, user+sys CPU seconds, quantize-phase time, peak RSS per
# rank, where each rank's time went (--verbose phases of the best run), and a
# check that the outputs' datasets are identical.
#   scripts/bench/bench_mpi.sh [BUILD_DIR] [ARCH] [REPEATS]
# Compares fairly on a 2-core machine: -n 1 x 1 thread, -n 2 x 1 thread each,
# and -n 1 x 2 threads (the same two cores used by threads instead of ranks).
# The rank configurations are placed as mpirun places them by default (each
# rank bound to a core); the threads configuration is not bound, since its
# one rank needs both cores.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$here/build}"
arch="${2:-esm2_t30_150M_UR50D}"
reps="${3:-9}"
proteus="$build/cli/proteus"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Single-node launch settings (docs/CLUSTER.md): without a running munge
# daemon PMIx's munge security plugin retries for ~2 s per launch, UCX
# probes for InfiniBand in MPI_Init for ~0.2 s, mpirun's PCI scan and
# PMIx's shared-memory job store cost ~40 ms more, and loading hwloc's
# plugins (which probe for X displays) ~5 ms. A caller's values win.
settings=()
for kv in PMIX_MCA_psec=native OMPI_MCA_pml=ob1 PMIX_MCA_gds=hash HWLOC_COMPONENTS=-pci,-linuxio HWLOC_PLUGINS_BLACKLIST=hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml; do
  k=${kv%%=*}
  if [[ -z "${!k+x}" ]]; then export "$kv"; settings+=("$kv"); fi
done
tmp="$(mktemp -d /tmp/pq_bench_mpi.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
model="$tmp/model.safetensors"
"$proteus" synth --arch "$arch" --seed 1 --out "$model" >/dev/null
opts=(--per-channel --precision int8 -q)
cat "$model" >/dev/null  # page cache warm for every configuration alike

# One run of a configuration; keeps its best wall time (and that run's CPU
# seconds and --verbose phases) and its best quantize phase (and peak RSS).
once() { # name ranks threads [mpirun options]
  local name=$1 n=$2 t=$3 out="$tmp/$1.h5" t0 t1 log w q
  local place=("${@:4}")
  rm -f "$out"
  t0=$(date +%s.%N)
  # user+sys of mpirun and its ranks (children) on the last line of stderr
  log=$(/usr/bin/time -f "cpu %U %S" mpirun -n "$n" ${place[@]+"${place[@]}"} "$proteus" quantize --model "$model" \
        --out "$out" --threads "$t" "${opts[@]}" -v 2>&1)
  t1=$(date +%s.%N)
  w=$(echo "$t1 - $t0" | bc -l)
  q=$(echo "$log" | sed -n 's/^ranks: *[0-9]*, quantize phase \([0-9.]*\) s.*/\1/p')
  echo "$w" >> "$tmp/$name.all"
  if [[ ! -f "$tmp/$name.best" ]] || (( $(echo "$w < $(cat "$tmp/$name.best")" | bc -l) )); then
    echo "$w" > "$tmp/$name.best"
    echo "$log" | sed -n 's/^cpu \([0-9.]*\) \([0-9.]*\)$/\1 + \2/p' | tail -1 > "$tmp/$name.cpu"
    echo "$log" | grep 'phases:' | sed -e 's/^\[\(r[0-9]*\) [a-z]*\] debug: phases: /    \1: /' \
      -e 's/^debug: phases: /    r0: /' | sort -s -k1,1 > "$tmp/$name.phases"
  fi
  if [[ ! -f "$tmp/$name.bestq" ]] || (( $(echo "$q < $(cat "$tmp/$name.bestq")" | bc -l) )); then
    echo "$q" > "$tmp/$name.bestq"
    echo "$log" | sed -n 's/.*peak RSS \(.*\)/\1/p' > "$tmp/$name.rss"
  fi
}

report() { # name
  local name=$1
  printf "%-8s wall %5.2f s  user+sys %s s  quantize phase %5.2f s  peak RSS %s\n" "$name" \
    "$(cat "$tmp/$name.best")" "$(cat "$tmp/$name.cpu")" "$(cat "$tmp/$name.bestq")" "$(cat "$tmp/$name.rss")"
  cat "$tmp/$name.phases"
  echo "$(cat "$tmp/$name.best") $(cat "$tmp/$name.bestq")" > "$tmp/$name.time"
}

echo "bench_mpi: $arch ($(du -h "$model" | cut -f1)), RTN int8 per-channel, best of $reps (configurations interleaved), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if (( ${#settings[@]} )); then echo "set for this run: ${settings[*]}"; else echo "launch settings: the caller's (PMIX_MCA_psec=${PMIX_MCA_psec:-unset}, OMPI_MCA_pml=${OMPI_MCA_pml:-unset}, PMIX_MCA_gds=${PMIX_MCA_gds:-unset}, HWLOC_COMPONENTS=${HWLOC_COMPONENTS:-unset}, HWLOC_PLUGINS_BLACKLIST=${HWLOC_PLUGINS_BLACKLIST:-unset})"; fi
t0=$(date +%s.%N); mpirun -n 1 /bin/true; t1=$(date +%s.%N)
printf "launcher only (mpirun -n 1 /bin/true): %.2f s\n" "$(echo "$t1 - $t0" | bc -l)"
# Interleaved, so that a slow spell of a shared machine hits every
# configuration alike.
for _ in $(seq "$reps"); do
  once n1_t1 1 1
  once n2_t1 2 1
  once n1_t2 1 2 --bind-to none
done
report n1_t1
report n2_t1
report n1_t2
read -r w11 q11 < "$tmp/n1_t1.time"
read -r w21 q21 < "$tmp/n2_t1.time"
read -r w12 q12 < "$tmp/n1_t2.time"
printf "speedup -n 2 x 1 thread vs -n 1 x 1 thread: wall %.2fx, quantize phase %.2fx\n" \
  "$(echo "$w11 / $w21" | bc -l)" "$(echo "$q11 / $q21" | bc -l)"
printf "speedup -n 1 x 2 threads vs -n 1 x 1 thread: wall %.2fx, quantize phase %.2fx\n" \
  "$(echo "$w11 / $w12" | bc -l)" "$(echo "$q11 / $q12" | bc -l)"
# The same ratio round by round (each -n 1 run against the -n 2 run right
# after it), which a slow spell longer than a round affects on both sides.
paste "$tmp/n1_t1.all" "$tmp/n2_t1.all" | awk '{print $1 / $2}' | sort -n |
  awk '{r[NR] = $1} END {m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2;
       printf "round by round, -n 1 wall / -n 2 wall: median %.2fx (%.2f-%.2fx over %d rounds)\n", m, r[1], r[NR], NR}'
/usr/bin/python3 - "$tmp/n1_t1.h5" "$tmp/n2_t1.h5" "$tmp/n1_t2.h5" <<'PY'
import sys, h5py, numpy as np
def dsets(fn):
    out = {}
    with h5py.File(fn, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, np.ascontiguousarray(o[()]).tobytes()) if isinstance(o, h5py.Dataset) else None)
    return out
a = dsets(sys.argv[1])
for fn in sys.argv[2:]:
    assert dsets(fn) == a, fn + " differs"
print(f"outputs identical: {len(a)} datasets")
PY
