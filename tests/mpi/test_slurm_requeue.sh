#!/usr/bin/env bash
# test_slurm_requeue.sh - a real one-node Slurm: scripts/slurm/quantize.sbatch
# (or calibrate.sbatch)
# under a time limit shorter than the work (1 minute; the ranks made slow by a
# test switch), so that Slurm's warning (--signal=B:USR1) stops the ranks,
# the script requeues the job and the requeued job resumes from the journal,
# at least once; the file must be byte for byte the one of a run without a
# limit (the same command under mpirun). Slurm holds a requeued job back for
# two minutes; the test lets it start as soon as the node is idle again
# (scontrol update StartTime=now).
# Skips (77) where Slurm is not installed.
# usage: test_slurm_requeue.sh PROTEUS MPIEXEC [quantize|calibrate]
set -euo pipefail
proteus="$(readlink -f "$1")"
mpiexec="$2"
mode="${3:-quantize}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
for b in sbatch scontrol slurmctld slurmd munged; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { echo "SKIP: $b not found (Slurm is not installed)"; exit 77; }
done
tmp="$(mktemp -d /tmp/pq_requeue.XXXXXX)"
export SLURM_CI_DIR="$tmp/slurm"
export SLURM_CONF="$SLURM_CI_DIR/slurm.conf"
chmod 755 "$tmp"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok=0 jobid=""
cleanup() {
  [ -z "$jobid" ] || scancel "$jobid" >/dev/null 2>&1 || true
  "$here/scripts/slurm/local-slurm.sh" down >/dev/null 2>&1 || true
  if [ $ok = 1 ]; then rm -rf "$tmp"; else echo "logs kept in $tmp" >&2; fi
}
trap cleanup EXIT

"$here/scripts/slurm/local-slurm.sh" up || fail "Slurm did not start"
"$proteus" synth --arch esm2_t6_8M_UR50D --seed 1 --out "$tmp/t6.safetensors" >/dev/null
mkdir "$tmp/ref" "$tmp/job"
if [ "$mode" = calibrate ]; then
  # 40 blocks of one sequence, 2 s each (PQ_TEST_SLOW_RANK), two ranks at a
  # time: ~40 s of work, as the quantize case
  data="$here/data/proteins/calib_sample.fasta"
  args=(--max-seqs 40 --journal-block 1 -q)
  pos=(../t6.safetensors "$data" x.h5)
  (cd "$tmp/ref" && "$mpiexec" -n 2 --oversubscribe "$proteus" calibrate --model ../t6.safetensors \
     --calibration-data "$data" --out x.h5 --threads 1 "${args[@]}" >/dev/null) || fail "the reference run failed"
else
  # 3700 units of 8k, 20 ms each on both ranks (PQ_TEST_SLOW_RANK): ~40 s of work
  args=(--per-channel --unit-bytes 8k -q)
  pos=(../t6.safetensors x.h5)
  # the reference: the job's command line exactly (the script adds --threads 1,
  # and --resume, which is not recorded), without a limit
  (cd "$tmp/ref" && "$mpiexec" -n 2 --oversubscribe "$proteus" quantize --model ../t6.safetensors --out x.h5 \
     --threads 1 "${args[@]}" >/dev/null) || fail "the reference run failed"
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_pml=ob1
unset PMIX_MCA_psec PMIX_MCA_gds
t0=$(date +%s)
jobid=$(cd "$tmp/job" && PROTEUS="$proteus" PQ_TEST_SLOW_RANK=0,1 sbatch --parsable -n 2 --time=1 \
        --signal=B:USR1@40 "$here/scripts/slurm/$mode.sbatch" "${pos[@]}" "${args[@]}")
log="$tmp/job/proteus-proteus-$mode-$jobid.out"
state="" restarts=0
while [ $(( $(date +%s) - t0 )) -lt 240 ]; do
  info=$(scontrol show job "$jobid" -o 2>/dev/null || true)
  [ -n "$info" ] || break   # purged (MinJobAge) after it ended
  state=$(grep -o 'JobState=[A-Z_]*' <<<"$info" | cut -d= -f2)
  restarts=$(grep -o 'Restarts=[0-9]*' <<<"$info" | cut -d= -f2)
  case "$state" in
    COMPLETED) break ;;
    FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) fail "job $jobid ended $state" ;;
    # once the node has finished with the last run (a start while it is still
    # completing finds the job's credential revoked and fails the job)
    PENDING) if grep -q 'Reason=BeginTime' <<<"$info" && [ "$(sinfo -h -o %T | head -1)" = idle ]; then
               sleep 2; scontrol update JobId="$jobid" StartTime=now 2>/dev/null || true
             fi ;;
  esac
  sleep 1
done
echo "job $jobid: $state after $(( $(date +%s) - t0 )) s, $restarts restarts"
[ -f "$log" ] && sed 's/^/  job: /' "$log"
grep -q "^proteus-$mode: done" "$log" || fail "the job did not finish"
n=$(grep -c "requeued to resume" "$log" || true)
[ "$n" -ge 1 ] || fail "the job was never requeued: make the work longer than the time limit"
grep -q "(restart $n)" "$log" || fail "no run of the job after its requeue $n"
[ ! -e "$tmp/job/x.h5.journal" ] || fail "the journal was left"
[ ! -e "$tmp/job/x.h5.partial" ] || fail "a .partial file was left"
cmp "$tmp/job/x.h5" "$tmp/ref/x.h5" || fail "the requeued job's file differs from a run without a limit"
echo "requeued $n times; the file equals a run without a limit"
ok=1
echo "PASS"
