#!/usr/bin/env bash
# bench_gptq_ranks.sh - the whole GPTQ int4 run (quantize --method gptq,
# per-channel) of a synthetic ESM-2 on 1 and 2 MPI ranks and 1 rank x 2
# threads (and 3 ranks for the bytes): wall time of each, the -n 2 / -n 1
# speed-up, and whether every output's datasets are the same bytes as -n 1's.
#   scripts/bench/bench_gptq_ranks.sh [BUILD_DIR] [ARCH] [N_SEQS] [MAX_LEN] [REPEATS]
# Defaults: esm2_t33_650M_UR50D, 128 calibration sequences (the first of the
# bundled sample, data/proteins/calib_sample.fasta) cut to 512 residues,
# 1 repeat (the best of REPEATS is kept). A reduced run for a loaded
# machine: e.g. `bench_gptq_ranks.sh build esm2_t33_650M_UR50D 16 128`.
# Each run's --verbose phases of the best -n 1 and -n 2 runs are printed.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$here/build}"
arch="${2:-esm2_t33_650M_UR50D}"
n_seqs="${3:-128}"
max_len="${4:-512}"
reps="${5:-1}"
proteus="$build/cli/proteus"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# single-node launch settings (docs/CLUSTER.md); a caller's values win
for kv in PMIX_MCA_psec=native OMPI_MCA_pml=ob1 PMIX_MCA_gds=hash HWLOC_COMPONENTS=-pci,-linuxio \
          HWLOC_PLUGINS_BLACKLIST=hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml; do
  k=${kv%%=*}
  [[ -n "${!k+x}" ]] || export "$kv"
done
tmp="$(mktemp -d /tmp/pq_bench_gptq.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
model="$tmp/model.safetensors"
"$proteus" synth --arch "$arch" --seed 1 --out "$model" >/dev/null
# the first N_SEQS sequences of the bundled sample, each cut to MAX_LEN residues
fasta="$tmp/calib.fasta"
awk -v n="$n_seqs" -v m="$max_len" '
  /^>/ { if (seq != "") print substr(seq, 1, m); if (++k > n) exit; print; seq = ""; next }
  { seq = seq $0 }
  END { if (seq != "" && k <= n) print substr(seq, 1, m) }' "$here/data/proteins/calib_sample.fasta" > "$fasta"
echo "model: synthetic $arch; calibration: $(grep -c '>' "$fasta") sequences, $(grep -v '>' "$fasta" | tr -d '\n' | wc -c) residues (<= $max_len each)"
opts=(--method gptq --precision int4 --per-channel --calibration-data "$fasta" -q)
cat "$model" >/dev/null

once() { # name ranks threads
  local name=$1 n=$2 t=$3 out="$tmp/$1.h5" t0 t1 w log
  rm -f "$out"
  t0=$(date +%s.%N)
  log=$(mpirun -n "$n" "$proteus" quantize --model "$model" --out "$out" --threads "$t" "${opts[@]}" -v 2>&1) || {
    echo "$log" >&2; echo "FAIL: $name" >&2; exit 1; }
  t1=$(date +%s.%N)
  w=$(echo "$t1 - $t0" | bc -l)
  if [[ ! -f "$tmp/$name.best" ]] || (( $(echo "$w < $(cat "$tmp/$name.best")" | bc -l) )); then
    echo "$w" > "$tmp/$name.best"
    echo "$log" | grep -E 'phases:|gptq' | sed -e 's/^/    /' > "$tmp/$name.log"
  fi
}

# interleaved, so that a change in the machine's load hits every configuration alike
for ((r = 0; r < reps; r++)); do
  once n1 1 1
  once n2 2 1
  once t2 1 2
done
once n3 3 1

same() { # the datasets of two files, bytes compared (h5diff would compare values)
  "$here/.venv/bin/python" - "$1" "$2" <<'EOF'
import sys, h5py
def flat(p):
    d = {}
    with h5py.File(p, "r") as f:
        f.visititems(lambda k, o: d.__setitem__(k, o[()].tobytes()) if isinstance(o, h5py.Dataset) else None)
    return d
a, b = flat(sys.argv[1]), flat(sys.argv[2])
sys.exit(0 if a == b else 1)
EOF
}
printf "%-16s %10s\n" config "wall (s)"
for c in n1 n2 t2 n3; do printf "%-16s %10.1f\n" "$c" "$(cat "$tmp/$c.best")"; done
echo "speed-up -n 2 / -n 1: $(echo "$(cat "$tmp/n1.best") / $(cat "$tmp/n2.best")" | bc -l | cut -c1-5)x"
echo "speed-up 2 threads / 1: $(echo "$(cat "$tmp/n1.best") / $(cat "$tmp/t2.best")" | bc -l | cut -c1-5)x"
status=0
for c in n2 t2 n3; do
  if same "$tmp/n1.h5" "$tmp/$c.h5"; then echo "datasets $c = n1: identical"
  else echo "datasets $c = n1: DIFFER"; status=1; fi
done
for c in n1 n2; do echo "$c (best run):"; cat "$tmp/$c.log"; done
exit $status
