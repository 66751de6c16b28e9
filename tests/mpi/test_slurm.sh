#!/usr/bin/env bash
# test_slurm.sh - a real one-node Slurm: bring it up, sbatch --wait the
# quantize batch script on a synthetic model (2 ranks, srun --mpi=pmix),
# check the exit code, the job's output file and the HDF5 output; then the
# embed batch script with that model (the same bytes as one process, progress
# in the job's log); take Slurm down. If Slurm cannot start, the test fails (it is never skipped).
# usage: test_slurm.sh PROTEUS
set -euo pipefail
proteus="$(readlink -f "$1")"
here="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d /tmp/pq_slurm.XXXXXX)"
export SLURM_CI_DIR="$tmp/slurm"
export SLURM_CONF="$SLURM_CI_DIR/slurm.conf"
chmod 755 "$tmp"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok=0
cleanup() {
  "$here/scripts/slurm/local-slurm.sh" down >/dev/null 2>&1 || true
  if [ $ok = 1 ]; then rm -rf "$tmp"; else echo "logs kept in $tmp" >&2; fi
}
trap cleanup EXIT

"$here/scripts/slurm/local-slurm.sh" up || fail "Slurm did not start"

"$proteus" synth --arch esm2_t6_8M_UR50D --seed 1 --out "$tmp/t6.safetensors" >/dev/null
t0=$(date +%s)
set +e
# This loopback test node runs as root with no fast interconnect: say so in the
# environment sbatch passes to the job (a real cluster keeps its own settings).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# In the sanitizer build the ranks get the ASan options that mpirun would
# give them (tests/sanitize/run.sh: mca_base_env_list); srun does not read it.
case "${OMPI_MCA_mca_base_env_list:-}" in ASAN_OPTIONS=*) export "${OMPI_MCA_mca_base_env_list%%;*}" ;; esac
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_pml=ob1
# Under srun the site's PMIx security and data store apply (munge runs
# here); PMIX_MCA_psec and PMIX_MCA_gds meant for plain mpirun
# (scripts/test.sh) are dropped.
unset PMIX_MCA_psec PMIX_MCA_gds
jobid=$(cd "$tmp" && PROTEUS="$proteus" timeout 240 sbatch --parsable --wait -n 2 \
        "$here/scripts/slurm/quantize.sbatch" "$tmp/t6.safetensors" "$tmp/t6.h5" --per-channel --unit-bytes 64k)
rc=$?
set -e
echo "sbatch --wait: job $jobid rc $rc in $(( $(date +%s) - t0 )) s"
log="$tmp/proteus-proteus-quantize-$jobid.out"
[ -f "$log" ] && sed 's/^/  job: /' "$log"
[ "$rc" = 0 ] || fail "sbatch --wait returned $rc"
[ -f "$log" ] || fail "no job output file $log"
# A job purged before sbatch polled also returns 0: the marker lines and the
# job's record (if still there) say whether it really completed.
grep -q "2 ranks x 1 threads" "$log" || fail "the job did not run with 2 ranks"
grep -q "^wrote $tmp/t6.h5" "$log" || fail "proteus did not finish"
grep -q "^proteus-quantize: done" "$log" || fail "the batch script did not finish"
grep -Eq "^ranks: +2," "$log" || fail "the run did not see 2 MPI ranks"
state=$(scontrol show job "$jobid" -o 2>/dev/null | grep -o 'JobState=[A-Z]*' || true)
[ -z "$state" ] || [ "$state" = JobState=COMPLETED ] || fail "job state $state"
[ -f "$tmp/t6.h5" ] || fail "no output file"
[ ! -e "$tmp/t6.h5.partial" ] || fail "a .partial file was left"
/usr/bin/python3 - "$tmp/t6.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["format"] in (b"proteus.quantized", "proteus.quantized"), f.attrs["format"]
    assert int(f.attrs["num_ranks"]) == 2, f.attrs["num_ranks"]
    g = f["tensors/esm.encoder.layer.0.intermediate.dense.weight"]
    assert g["qweight"].shape == (1280, 320) and g["qweight"].dtype == "int8"
    assert g["scale"].shape[0] == 1280
print("output ok: num_ranks=2, qweight int8 1280x320")
PY

# embed.sbatch on the same 2 ranks: the bundled sample's first 20 records
awk '/^>/{n++} n>20{exit} {print}' "$here/data/proteins/eval_sample.fasta" > "$tmp/in.fasta"
set +e
jobid=$(cd "$tmp" && PROTEUS="$proteus" timeout 240 sbatch --parsable --wait -n 2 \
        "$here/scripts/slurm/embed.sbatch" "$tmp/t6.h5" "$tmp/in.fasta" "$tmp/emb.h5" --max-length 100 \
        --chunk-residues 300)
rc=$?
set -e
log="$tmp/proteus-proteus-embed-$jobid.out"
[ -f "$log" ] && sed 's/^/  job: /' "$log"
[ "$rc" = 0 ] || fail "embed.sbatch: sbatch --wait returned $rc"
grep -q "^embedded 20 sequences .* 2 ranks" "$log" || fail "embed.sbatch: proteus did not finish on 2 ranks"
grep -q "^progress: 100% 20/20 sequences" "$log" || fail "embed.sbatch: no progress lines in the log"
grep -q "^proteus-embed: done" "$log" || fail "embed.sbatch: the batch script did not finish"
"$proteus" embed --model "$tmp/t6.h5" --fasta "$tmp/in.fasta" --out "$tmp/emb1.h5" --max-length 100 --quiet \
    >/dev/null
cmp "$tmp/emb.h5" "$tmp/emb1.h5" || fail "embed.sbatch on 2 ranks differs from one process"
[ ! -e "$tmp/emb.h5.journal" ] || fail "embed.sbatch left its journal"
ok=1
echo "PASS"
