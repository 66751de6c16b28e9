#!/usr/bin/env bash
# local-slurm.sh - bring a one-node Slurm (munged + slurmctld + slurmd) up or
# down on this machine, listening on loopback, with its config and state in
# /tmp. For CI and for trying scripts/slurm/quantize.sbatch without a cluster.
#   scripts/slurm/local-slurm.sh up      start (idempotent); prints the conf path
#   scripts/slurm/local-slurm.sh down    stop the daemons we started
#   scripts/slurm/local-slurm.sh status
# Environment: SLURM_CI_DIR (default /tmp/slurm-ci), SLURM_CI_CPUS (CPUs to
# advertise, default nproc; more than nproc uses config_overrides),
# SLURM_CI_CTLD_PORT / SLURM_CI_SLURMD_PORT (6817/6818), SLURM_CI_BIND_ANY=1
# (listen on all addresses, needed when the hostname is not loopback).
# Needs root and the packages slurmctld slurmd slurm-client munge
# (scripts/deps.sh --peers). Tested with Slurm 22.05 (Debian 12).
set -euo pipefail

dir="${SLURM_CI_DIR:-/tmp/slurm-ci}"
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"
cpus="${SLURM_CI_CPUS:-$(nproc)}"
ctld_port="${SLURM_CI_CTLD_PORT:-6817}"
slurmd_port="${SLURM_CI_SLURMD_PORT:-6818}"

die() { echo "local-slurm: $*" >&2; exit 1; }

need() {
  for b in munged slurmctld slurmd sinfo srun sbatch scontrol; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found (install slurmctld slurmd slurm-client munge: scripts/deps.sh --peers)"
  done
  [ "$(id -u)" = 0 ] || die "must run as root (it starts system daemons)"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  local mem extra="" comm=""
  mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  [ -n "$mem" ] || mem=1000
  [ "$cpus" -gt "$(nproc)" ] && extra="SlurmdParameters=config_overrides"
  # Listen on 127.0.0.1 only when the hostname resolves to loopback;
  # otherwise the daemons must bind the address the hostname resolves to.
  if [ "${SLURM_CI_BIND_ANY:-0}" != 1 ] && getent hosts "$(hostname)" | awk '{print $1}' | grep -q '^127\.'; then
    comm="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
  fi
  cat > "$conf" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$comm
# No cgroups: works in containers and on cgroup v1 or v2 alike.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Debian's Open MPI can only be direct-launched through PMIx.
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Start jobs at once, and keep finished jobs long enough for sbatch --wait
# to poll every 2 s and see their state.
SchedulerParameters=batch_sched_delay=0
MinJobAge=5
# Reject impossible requests instead of leaving them pending forever.
EnforcePartLimits=ALL
ReturnToService=2
MailProg=/bin/true
SlurmdTimeout=30
KillWait=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
$extra
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  [ -f /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || die "cannot create /etc/munge/munge.key"
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  install -d -o munge -g munge -m 0755 /run/munge
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged || die "munged did not start"
  else
    /usr/sbin/munged --force || die "munged did not start"
  fi
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "munged does not answer"
}

up() {
  need
  write_conf
  start_munge
  pid_alive "$dir/slurmctld.pid" || slurmctld -c -f "$conf" || die "slurmctld did not start (see $dir/log/slurmctld.log)"
  pid_alive "$dir/slurmd.pid" || slurmd -N localhost -f "$conf" || die "slurmd did not start (see $dir/log/slurmd.log)"
  for _ in $(seq 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      timeout 30 srun -n 1 true || die "srun smoke test failed (see $dir/log)"
      echo "local-slurm: up ($(sinfo -h -o '%P %a %D %T %N'), SLURM_CONF=$conf)"
      return 0
    fi
    sleep 0.1
  done
  sinfo >&2 || true
  tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  die "node never became idle"
}

down() {
  for d in slurmd slurmctld; do
    if pid_alive "$dir/$d.pid"; then
      local p; p=$(cat "$dir/$d.pid")
      kill "$p"
      for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$dir/$d.pid"
  done
  echo "local-slurm: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) export SLURM_CONF; sinfo ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
