#!/usr/bin/env bash
# slurmd's Epilog (slurm.conf): run as root on the job's node when the job ends.
# Without cgroups (proctrack/linuxproc) Slurm finds a job's processes by their
# parents, so a process the job daemonised (`cmd &` under nohup or setsid) is
# re-parented and outlives the job. As a site's epilog does, kill whatever of
# the job's user still carries this job's id in its environment.
#
# Having an Epilog at all also speeds Slurm up: slurmd then reports the job's
# end with an epilog-complete message, which runs the scheduler at once; without
# one the freed CPUs wait for slurmctld's next scheduling pass (bench/throughput.py).
set -uo pipefail
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
job=${SLURM_JOB_ID:?Slurm sets SLURM_JOB_ID for the epilog}
uid=${SLURM_JOB_UID:?Slurm sets SLURM_JOB_UID for the epilog}
# Never root's processes (slurmd, the NFS client) whatever a job claims.
[[ "$uid" != 0 ]] || exit 0

strays=()
for proc in /proc/[0-9]*; do
  [[ "$(stat -c %u "$proc" 2>/dev/null)" == "$uid" ]] || continue
  if tr '\0' '\n' < "$proc/environ" 2>/dev/null | grep -qx "SLURM_JOB_ID=$job"; then
    strays+=("${proc#/proc/}")
  fi
done
if (( ${#strays[@]} )); then
  kill -KILL "${strays[@]}" 2>/dev/null
  # Slurm discards an epilog's output: say it in the node's log (minihpc logs NODE).
  echo "epilog: job $job: killed ${#strays[@]} process(es) it left behind: ${strays[*]}" > /proc/1/fd/2
fi
exit 0
