#!/usr/bin/env bash
# Healthchecks that test the daemon itself, not just its process.
set -euo pipefail

# The NFS client answers: mounted, and a stat through it returns in time.
nfs_ok() {
  if ! { mountpoint -q /shared && timeout 5 stat -t /shared/. >/dev/null; }; then
    echo "NFS client on /shared not answering (see $(hostname)'s log)"
    return 1
  fi
}

case "${1:?usage: minihpc-healthcheck <role>}" in
  slurmdbd)
    # The site's accounting is applied, and the database answers through slurmdbd.
    [[ -e /run/minihpc-accounting.done ]]
    sacctmgr -n -P list cluster format=cluster | grep -q . ;;
  slurmctld)
    scontrol ping | grep -q 'is UP' ;;
  slurmd)
    nfs_ok
    pidof slurmd >/dev/null
    # The controller sees this node usable (idle/alloc/mix/completing), not down or drained.
    state=$(sinfo -h -n "$(hostname)" -o %t | head -n1)
    [[ "$state" =~ ^(idle|alloc|mix|comp|plnd)$ ]] ;;
  login)
    nfs_ok
    munge -n | unmunge >/dev/null
    scontrol ping | grep -q 'is UP'
    snakemake --version >/dev/null ;;
  *) echo "unknown role $1" >&2; exit 2 ;;
esac
