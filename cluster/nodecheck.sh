#!/usr/bin/env bash
# slurmd's HealthCheckProgram (slurm.conf): run as root when slurmd starts and
# every HealthCheckInterval. Like a site's node health check, it drains this
# node while its scratch is not what the topology declares, so no job lands on
# it, and resumes the node once scratch is right again, but only a drain of its
# own: an administrator's drain stays, with its reason, and is never lifted.
set -uo pipefail
# slurmd gives the program an empty environment.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
TAG="nodecheck:"
node=${SLURMD_NODENAME:-$(hostname)}
reason=$(sinfo -h -n "$node" -o '%E' | head -n 1)

if problem=$(minihpc-healthcheck scratch); then
  if [[ "$reason" == "$TAG"* ]]; then
    scontrol update nodename="$node" state=resume
  fi
elif [[ -z "$reason" || "$reason" == none || ("$reason" == "$TAG"* && "$reason" != "$TAG $problem") ]]; then
  # A reason someone else gave (an administrator's drain, slurmctld's "Not
  # responding") is never replaced: replaced, it would be ours to resume.
  scontrol update nodename="$node" state=drain reason="$TAG $problem"
fi
exit 0
