#!/usr/bin/env bash
# bench_15b.sh - the whole large-model sequence on one machine, as a new user
# would run it: synth (f16), quantize int8 and int4 with 1 and 2 ranks (the
# outputs of 1 and 2 ranks compared), embed of two sequences with the int8
# and the int4 file. Each phase prints its wall time, its CPU time (user +
# system: on a shared machine the figure to compare), the bytes it read from
# disk (the rusage block inputs of the command and its children: page-cache
# hits are not counted) and its peak RSS; a quantize also its -v phases.
# Everything it writes is removed at the end (or on an interrupt). Not part
# of CI: the 15B takes tens of minutes.
#
#   scripts/bench/bench_15b.sh [--arch NAME] [--dir DIR] [--threads N] [--cold]
#                              [--checkpoint FILE] [--digest xxh3|sha256]
#
#   --arch NAME   ESM-2 size (default esm2_t48_15B_UR50D; esm2_t36_3B_UR50D
#                 runs the same sequence in a few minutes)
#   --dir DIR     where the files go (default $BENCH_DIR or /tmp/proteus-15b)
#   --threads N   threads of the one-rank runs (default 2; 2 ranks: N/2 each,
#                 at least 1)
#   --checkpoint FILE  quantize this checkpoint of --arch (kept) instead of
#                 synthesizing one (the synth phase is skipped)
#   --digest ALG  the source digest of the quantize runs (default: quantize's,
#                 xxh3 where the build has libxxhash)
#   --cold        drop the page cache before each quantize and embed (needs
#                 root and a writable /proc/sys/vm/drop_caches; refused
#                 otherwise)
#
# It checks the free disk space first: the f16 checkpoint (2 bytes per
# parameter), the int8 (1) and int4 (~0.5) files, and a second output of the
# 2-rank runs; it refuses with a message when DIR has less.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/build/cli/proteus
ARCH=esm2_t48_15B_UR50D
D=${BENCH_DIR:-/tmp/proteus-15b}
THREADS=2
COLD=0
GIVEN=
DIGEST=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH=$2; shift 2 ;;
    --dir) D=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --cold) COLD=1; shift ;;
    --checkpoint) GIVEN=$2; shift 2 ;;
    --digest) DIGEST=(--digest "$2"); shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_15b.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$B" ] || { echo "bench_15b.sh: $B missing: build first (ninja -C build)" >&2; exit 2; }
if [ "$COLD" = 1 ] && ! { sync && echo 1 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
  echo "bench_15b.sh: --cold needs to write /proc/sys/vm/drop_caches (root, not in a container)" >&2
  exit 2
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
  PMIX_MCA_psec=native OMPI_MCA_pml=ob1 PMIX_MCA_gds=hash HWLOC_COMPONENTS=-pci,-linuxio \
  HWLOC_PLUGINS_BLACKLIST=hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml

# Parameters of the size, from synth's own table (its --help lists the sizes).
case "$ARCH" in
  *15B*) PARAMS=15135E6 ;;
  *3B*) PARAMS=2839E6 ;;
  *650M*) PARAMS=651E6 ;;
  *150M*) PARAMS=148E6 ;;
  *35M*) PARAMS=34E6 ;;
  *8M*) PARAMS=8E6 ;;
  *) echo "bench_15b.sh: unknown --arch '$ARCH'" >&2; exit 2 ;;
esac
# The most on disk at once: the f16 checkpoint (2 B per parameter, unless
# given) with the int8 file of 1 rank and that of 2 ranks (1 + 1), or later
# with the int8 file kept and the two int4 files (1 + ~0.55 + 0.55); 5 % spare.
CKB=2; [ -n "$GIVEN" ] && CKB=0
NEED=$(awk -v p="$PARAMS" -v c="$CKB" 'BEGIN { printf "%.0f", p * (c + 2.1) * 1.05 }')
mkdir -p "$D"
FREE=$(df -B1 --output=avail "$D" | tail -1 | tr -d ' ')
if [ "$FREE" -lt "$NEED" ]; then
  awk -v n="$NEED" -v f="$FREE" -v d="$D" -v a="$ARCH" 'BEGIN {
    printf "bench_15b.sh: %s needs %.1f GB free in %s, it has %.1f GB; free some space, pass --dir, or use --arch esm2_t36_3B_UR50D\n",
           a, n / 1e9, d, f / 1e9 }' >&2
  exit 1
fi
trap 'rm -f "$D"/b15.*' EXIT

CK=${GIVEN:-$D/b15.ck.safetensors}
FA=$D/b15.two.fa
printf '>a\n%s\n>b\n%s\n' \
  "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLV" \
  "MSDKIIHLTDDSFDTDVLKADGAILVDFWAEWCGPCKMIAPILDEIADEYQGKLTVAKLNIDQNPGTAPKYGIRGIPTLLLFKNGEVAASKVGALSKGQLKEFLDANLAGSAEKIIHLTDDSFDTDVLKADGAILVDFWAEWCGPCKMIAPILDEIADEYQGKLTVAKLNIDQNPGTAPKYGIRGIPTLLLF" > "$FA"

cold() { if [ "$COLD" = 1 ]; then sync; echo 1 > /proc/sys/vm/drop_caches; fi; }

phase() { # name command...: wall, CPU, bytes read from disk, peak RSS (and -v phases)
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %I %M" -o "$D/b15.time" "$@" > "$D/b15.log" 2>&1 || {
    echo "bench_15b.sh: phase '$name' failed:" >&2; tail -5 "$D/b15.log" >&2; exit 1; }
  read -r wall user sys blocks rss < "$D/b15.time"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v b="$blocks" -v r="$rss" 'BEGIN {
    printf "%-28s wall %8.2f s   CPU %7.2f s   read %7.2f GB   peak RSS %8.1f MiB\n", n, w, u + s,
           b * 512 / 1e9, r / 1024 }'
  grep -o 'phases: MPI_Init.*' "$D/b15.log" | head -1 | sed 's/^/    /' || true
}

same() { # a b: the same tensors, digest and config (the command line and rank count differ)
  local out bad
  out=$(h5diff --exclude-path /provenance "$1" "$2" 2>&1 || true)
  bad=$(printf '%s\n' "$out" | grep -v -e '^attribute: <num_ranks of </>> and <num_ranks of </>>$' \
    -e 'differences\{0,1\} found$' -e '^$' || true)
  if [ -z "$bad" ]; then echo "  $(basename "$1") = $(basename "$2") (but num_ranks)"
  else echo "bench_15b.sh: $1 and $2 differ:" >&2; printf '%s\n' "$bad" | head -5 >&2; exit 1; fi
}

T2=$(( THREADS / 2 > 0 ? THREADS / 2 : 1 ))
echo "$ARCH on $(nproc) CPUs, $THREADS threads (2 ranks: $T2 each), files in $D$([ "$COLD" = 1 ] && echo ', cold cache')"
[ -n "$GIVEN" ] || phase "synth f16" "$B" synth --arch "$ARCH" --dtype f16 --out "$CK"
echo "  checkpoint $(stat -c %s "$CK" | awk '{ printf "%.2f GB", $1 / 1e9 }')"
if command -v dd > /dev/null; then
  dd if="$CK" of=/dev/null bs=16M iflag=direct 2>&1 | tail -1 | sed 's/^/  disk (dd iflag=direct): /'
fi
cold; phase "quantize int8 1 rank" "$B" quantize --model "$CK" --out "$D/b15.i8.h5" --per-channel \
  --threads "$THREADS" -v "${DIGEST[@]}"
cold; phase "quantize int8 2 ranks" mpirun -n 2 "$B" quantize --model "$CK" --out "$D/b15.i8n2.h5" \
  --per-channel --threads "$T2" -q "${DIGEST[@]}"
same "$D/b15.i8.h5" "$D/b15.i8n2.h5"
rm -f "$D/b15.i8n2.h5"
cold; phase "quantize int4 1 rank" "$B" quantize --model "$CK" --out "$D/b15.i4.h5" --precision int4 \
  --group-size 128 --threads "$THREADS" -v "${DIGEST[@]}"
cold; phase "quantize int4 2 ranks" mpirun -n 2 "$B" quantize --model "$CK" --out "$D/b15.i4n2.h5" \
  --precision int4 --group-size 128 --threads "$T2" -q "${DIGEST[@]}"
same "$D/b15.i4.h5" "$D/b15.i4n2.h5"
rm -f "$D/b15.i4n2.h5"
[ -n "$GIVEN" ] || rm -f "$CK"
for q in i8 i4; do
  echo "  $q file $(stat -c %s "$D/b15.$q.h5" | awk '{ printf "%.2f GB", $1 / 1e9 }')"
  cold; phase "embed 2 seqs $q" "$B" embed --model "$D/b15.$q.h5" --fasta "$FA" --out "$D/b15.e$q.h5" \
    --threads "$THREADS"
  rm -f "$D/b15.e$q.h5"
  cold; phase "embed 2 seqs $q no-verify" "$B" embed --model "$D/b15.$q.h5" --fasta "$FA" \
    --out "$D/b15.e$q.h5" --threads "$THREADS" --no-verify-checksums
done
