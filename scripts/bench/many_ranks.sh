#!/usr/bin/env bash
# many_ranks.sh - byte identity of `proteus quantize` for many oversubscribed
# ranks: the same command (one --out path, reused) on 1 rank and on each
# given rank count; the file must be the same bytes but for the root
# attribute num_ranks and the checksum of the object header holding it (at
# most 5 bytes, within 1 KiB). Prints the wall time of each run.
#   scripts/bench/many_ranks.sh [BUILD_DIR] [ARCH] [RANKS...]   (default: build t6_8M 16 32)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$here/build}"
arch="${2:-esm2_t6_8M_UR50D}"
shift $(( $# > 2 ? 2 : $# ))
ranks=("$@")
[ $# -gt 0 ] || ranks=(16 32)
proteus="$build/cli/proteus"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# single-node launch settings (docs/CLUSTER.md); a caller's values win
for kv in PMIX_MCA_psec=native OMPI_MCA_pml=ob1 PMIX_MCA_gds=hash HWLOC_COMPONENTS=-pci,-linuxio HWLOC_PLUGINS_BLACKLIST=hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml; do
  k=${kv%%=*}
  [[ -n "${!k+x}" ]] || export "${kv?}"
done
tmp="$(mktemp -d /tmp/pq_many_ranks.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
"$proteus" synth --arch "$arch" --seed 1 --out "$tmp/model.safetensors" >/dev/null
echo "many_ranks: $arch, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # n -> wall seconds, output in $tmp/n$1.h5
  local t0 t1
  t0=$(date +%s.%N)
  mpirun -n "$1" --oversubscribe "$proteus" quantize --model "$tmp/model.safetensors" --out "$tmp/q.h5" \
    --per-channel --unit-bytes 64k --threads 1 >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }
  t1=$(date +%s.%N)
  mv "$tmp/q.h5" "$tmp/n$1.h5"
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}'
}
printf "%6s %9s %s\n" ranks wall_s identical
printf "%6s %9.2f %s\n" 1 "$(run 1)" reference
status=0
for n in "${ranks[@]}"; do
  w=$(run "$n")
  # offsets of the differing bytes; same size, <= 5 of them, within 1 KiB
  same=yes
  if [ "$(stat -c %s "$tmp/n1.h5")" != "$(stat -c %s "$tmp/n$n.h5")" ]; then
    same="no (size)"
  else
    read -r cnt lo hi < <(cmp -l "$tmp/n1.h5" "$tmp/n$n.h5" | awk 'NR==1{lo=$1} {hi=$1; c++} END{print c+0, lo+0, hi+0}') || true
    if [ "$cnt" -gt 5 ] || [ $((hi - lo)) -ge 1024 ]; then same="no ($cnt bytes between $lo and $hi)"; fi
  fi
  [ "$same" = yes ] || status=1
  printf "%6s %9.2f %s\n" "$n" "$w" "$same"
  rm -f "$tmp/n$n.h5"
done
exit $status
