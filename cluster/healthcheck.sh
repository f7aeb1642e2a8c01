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

# Scratch is what the topology declares (scratch.env): a tmpfs of that size,
# root's, with that mode. Prints the first thing that is not.
scratch_ok() {
  local env=/etc/minihpc/slurm/scratch.env mode owner size
  # shellcheck source=/dev/null
  . "$env" 2>/dev/null || { echo "no $env: bring the cluster up with minihpc up"; return 1; }
  if ! mountpoint -q "$SCRATCH"; then
    echo "scratch $SCRATCH is not mounted"; return 1
  fi
  if [[ $(findmnt -n -o FSTYPE "$SCRATCH") != tmpfs ]]; then
    echo "scratch $SCRATCH is not a tmpfs"; return 1
  fi
  read -r mode owner < <(stat -c '%a %U' "$SCRATCH")
  size=$(df -m --output=size "$SCRATCH" | tail -n 1 | tr -d ' ')
  if [[ "$mode" != "$SCRATCH_MODE" ]]; then
    echo "scratch $SCRATCH has mode $mode, not $SCRATCH_MODE"; return 1
  fi
  if [[ "$owner" != root ]]; then
    echo "scratch $SCRATCH is owned by $owner, not root"; return 1
  fi
  if [[ "$size" != "$SCRATCH_MB" ]]; then
    echo "scratch $SCRATCH is $size MiB, not $SCRATCH_MB"; return 1
  fi
}

case "${1:?usage: minihpc-healthcheck <role>|scratch}" in
  scratch) scratch_ok ;;
  slurmdbd)
    # The site's accounting is applied, and the database answers through slurmdbd.
    [[ -e /run/minihpc-accounting.done ]]
    sacctmgr -n -P list cluster format=cluster | grep -q . ;;
  slurmctld)
    scontrol ping | grep -q 'is UP' ;;
  slurmrestd)
    # Listening, as its own user: it answers a request (a token-less one is refused, and that is an answer).
    # (By uid: ps shortens a name past 8 characters on some releases.)
    [[ $(ps -o uid= -C slurmrestd | tr -d ' ' | sort -u) == "$(id -u slurmrestd)" ]]
    exec 3<>/dev/tcp/127.0.0.1/6820
    printf 'GET /openapi/v3 HTTP/1.0\r\n\r\n' >&3
    timeout 5 head -c 12 <&3 | grep -q '^HTTP/1' ;;
  slurmd)
    nfs_ok
    scratch_ok
    pidof slurmd >/dev/null
    # The controller sees this node usable (idle/alloc/mix/completing), not down or drained.
    state=$(sinfo -h -n "$(hostname)" -o %t | head -n1)
    [[ "$state" =~ ^(idle|alloc|mix|comp|plnd)$ ]] ;;
  login)
    nfs_ok
    scratch_ok
    munge -n | unmunge >/dev/null
    scontrol ping | grep -q 'is UP'
    pidof sshd >/dev/null
    # Snakemake ran once at start (the entrypoint; running it here costs too much).
    [[ -s /run/minihpc-snakemake.version ]] ;;
  *) echo "unknown role $1" >&2; exit 2 ;;
esac
