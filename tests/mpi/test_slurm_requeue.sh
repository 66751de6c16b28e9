#!/usr/bin/env bash
# test_slurm_requeue.sh - a real one-node Slurm: scripts/slurm/quantize.sbatch,
# calibrate.sbatch and embed.sbatch, each under a time limit shorter than the
# work (1 minute; the ranks made slow by a test switch), so that Slurm's
# warning (--signal=B:USR1) stops the ranks, the script requeues the job and
# the requeued job resumes from the journal, at least once; each file must be
# byte for byte the one of a run without a limit (the same command under
# mpirun). The jobs share one Slurm start and run side by side (the node
# advertises 2 CPUs per job; the slow ranks mostly sleep). Slurm holds a
# requeued job back for two minutes; the test lets it start as soon as the
# node has finished with its last run (scontrol update StartTime=now).
# Skips (77) where Slurm is not installed.
# usage: test_slurm_requeue.sh PROTEUS MPIEXEC [quantize|calibrate|embed ...]
#        (default: all three)
set -euo pipefail
proteus="$(readlink -f "$1")"
mpiexec="$2"
shift 2
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(quantize calibrate embed)
here="$(cd "$(dirname "$0")/../.." && pwd)"
for b in sbatch scontrol slurmctld slurmd munged; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { echo "SKIP: $b not found (Slurm is not installed)"; exit 77; }
done
tmp="$(mktemp -d /tmp/pq_requeue.XXXXXX)"
export SLURM_CI_DIR="$tmp/slurm"
export SLURM_CONF="$SLURM_CI_DIR/slurm.conf"
export SLURM_CI_CPUS=$(( 2 * ${#modes[@]} ))
chmod 755 "$tmp"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok=0
declare -A jobid=() args=() pos=() done_=()
cleanup() {
  local m
  for m in "${!jobid[@]}"; do scancel "${jobid[$m]}" >/dev/null 2>&1 || true; done
  "$here/scripts/slurm/local-slurm.sh" down >/dev/null 2>&1 || true
  if [ $ok = 1 ]; then rm -rf "$tmp"; else echo "logs kept in $tmp" >&2; fi
}
trap cleanup EXIT

"$here/scripts/slurm/local-slurm.sh" up || fail "Slurm did not start"
"$proteus" synth --arch esm2_t6_8M_UR50D --seed 1 --out "$tmp/t6.safetensors" >/dev/null
calib="$here/data/proteins/calib_sample.fasta"
# Each case: ~30-40 s of work on 2 ranks, against a 1-minute limit with the
# warning 40 s before it.
# quantize: 3700 units of 8k, 20 ms each on both ranks (PQ_TEST_SLOW_RANK)
args[quantize]="--per-channel --unit-bytes 8k -q"
pos[quantize]="../t6.safetensors x.h5"
# calibrate: 40 blocks of one sequence, 2 s each
args[calibrate]="--max-seqs 40 --journal-block 1 -q"
pos[calibrate]="../t6.safetensors $calib x.h5"
# embed: 300 chunks of one sequence, 200 ms each
args[embed]="--chunk-residues 1 --max-length 64 -q"
pos[embed]="../t6.safetensors $calib x.h5"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# In the sanitizer build the ranks get the ASan options that mpirun would
# give them (tests/sanitize/run.sh: mca_base_env_list); srun does not read it.
case "${OMPI_MCA_mca_base_env_list:-}" in ASAN_OPTIONS=*) export "${OMPI_MCA_mca_base_env_list%%;*}" ;; esac
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_pml=ob1
t0=$(date +%s)
for m in "${modes[@]}"; do
  mkdir "$tmp/ref_$m" "$tmp/job_$m"
  # shellcheck disable=SC2086 # the word lists above
  jobid[$m]=$(cd "$tmp/job_$m" && env -u PMIX_MCA_psec -u PMIX_MCA_gds PROTEUS="$proteus" PQ_TEST_SLOW_RANK=0,1 \
              sbatch --parsable -n 2 --time=1 --signal=B:USR1@40 "$here/scripts/slurm/$m.sbatch" \
              ${pos[$m]} ${args[$m]})
done
# the references while the jobs run: the job's command line exactly (the
# script adds --threads 1, and --resume, which is not recorded), without a
# limit, under mpirun
for m in "${modes[@]}"; do
  case $m in
    quantize) set -- quantize --model ../t6.safetensors --out x.h5 ;;
    calibrate) set -- calibrate --model ../t6.safetensors --calibration-data "$calib" --out x.h5 ;;
    embed) set -- embed --model ../t6.safetensors --fasta "$calib" --out x.h5 ;;
  esac
  # shellcheck disable=SC2086
  (cd "$tmp/ref_$m" && "$mpiexec" -n 2 --oversubscribe "$proteus" "$@" --threads 1 ${args[$m]} >/dev/null) ||
    fail "the $m reference run failed"
done
unset PMIX_MCA_psec PMIX_MCA_gds
left=${#modes[@]}
while [ "$left" -gt 0 ] && [ $(( $(date +%s) - t0 )) -lt 400 ]; do
  for m in "${modes[@]}"; do
    [ -z "${done_[$m]:-}" ] || continue
    info=$(scontrol show job "${jobid[$m]}" -o 2>/dev/null || true)
    state=$(grep -o 'JobState=[A-Z_]*' <<<"$info" | cut -d= -f2 || true)
    case "$state" in
      # purged (MinJobAge) after it ended: the log says how
      COMPLETED|"") done_[$m]=1; left=$((left - 1))
                    echo "$m: job ${jobid[$m]} ${state:-gone} after $(( $(date +%s) - t0 )) s" ;;
      FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) fail "$m: job ${jobid[$m]} ended $state" ;;
      # once the node has finished with the last run (a start while it is
      # still completing finds the job's credential revoked and fails the job)
      PENDING) if grep -q 'Reason=BeginTime' <<<"$info" && ! sinfo -h -o %T | grep -qi comp; then
                 sleep 2; scontrol update JobId="${jobid[$m]}" StartTime=now 2>/dev/null || true
               fi ;;
    esac
  done
  sleep 1
done
for m in "${modes[@]}"; do
  log="$tmp/job_$m/proteus-proteus-$m-${jobid[$m]}.out"
  [ -f "$log" ] && sed "s/^/  $m job: /" "$log"
  grep -q "^proteus-$m: done" "$log" || fail "$m: the job did not finish"
  n=$(grep -c "requeued to resume" "$log" || true)
  [ "$n" -ge 1 ] || fail "$m: the job was never requeued: make the work longer than the time limit"
  grep -q "(restart $n)" "$log" || fail "$m: no run of the job after its requeue $n"
  [ ! -e "$tmp/job_$m/x.h5.journal" ] || fail "$m: the journal was left"
  [ ! -e "$tmp/job_$m/x.h5.partial" ] || fail "$m: a .partial file was left"
  cmp "$tmp/job_$m/x.h5" "$tmp/ref_$m/x.h5" || fail "$m: the requeued job's file differs from a run without a limit"
  echo "$m: requeued $n times; the file equals a run without a limit"
done
ok=1
echo "PASS"
