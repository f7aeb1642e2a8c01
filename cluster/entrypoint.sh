#!/usr/bin/env bash
# Entry point of the one Slurm image: `minihpc-entrypoint <role>` with role one
# of slurmdbd, slurmctld, slurmd, login. Every role gets the cluster's munge key
# and config; then the role's daemon runs in the foreground under tini.
set -euo pipefail

ROLE=${1:?usage: minihpc-entrypoint slurmdbd|slurmctld|slurmrestd|slurmd|login}
CONF_SRC=/etc/minihpc/slurm          # generated config, mounted read-only
REST_PORT=6820                       # slurmrestd's (minihpc/rest.py's PORT; a unit test keeps them in step)
WAIT_SECONDS=${WAIT_SECONDS:-300}

log() { printf '%s[%s]: %s\n' "$ROLE" "$(hostname)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for <what> <command...>: bounded wait that says what it waits for.
wait_for() {
  local what=$1 i
  shift
  for ((i = 0; i < WAIT_SECONDS; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    ((i % 10 == 0)) && log "waiting for $what (${i}s)"
    sleep 1
  done
  die "$what not ready after ${WAIT_SECONDS}s"
}

link_config() {
  local f
  [[ -r "$CONF_SRC/slurm.conf" ]] || die "no $CONF_SRC/slurm.conf: start the cluster with make cluster-up"
  # Links, not copies: a regenerated config is seen at once by scontrol reconfigure.
  for f in slurm.conf cgroup.conf gres.conf; do ln -sfn "$CONF_SRC/$f" "/etc/slurm/$f"; done
}

# This node's stand-in GPUs: every File= of its gres.conf lines, linked to
# /dev/null (Slurm needs a device file per GPU; nothing opens it).
link_gpus() {
  local dev
  for dev in $(sed -n "s/^NodeName=$(hostname) .*File=\([^ ]*\).*/\1/p" "$CONF_SRC/gres.conf"); do
    ln -sfn /dev/null "$dev"
  done
}

# The REST API's signing key, SlurmUser's alone (slurmctld and slurmdbd only).
install_jwt_key() {
  [[ -s /run/secrets/jwt_key ]] || die "missing secret jwt_key (minihpc up generates it)"
  install -o slurm -g slurm -m 0400 /run/secrets/jwt_key /etc/slurm/jwt_hs256.key
}

# The REST API: Debian's slurmrestd, as its own user (never root or SlurmUser),
# tokens only (rest_auth/jwt; no local socket auth), on the cluster's network.
run_slurmrestd() {
  wait_for "slurmctld to answer" scontrol ping
  export SLURM_JWT=daemon
  # Its unshare of files and System V IPC needs CAP_SYS_ADMIN, which this container
  # does not get: the container is its namespace, and the daemon is unprivileged in it.
  export SLURMRESTD_SECURITY=disable_unshare_files,disable_unshare_sysv
  exec setpriv --reuid=slurmrestd --regid=slurmrestd --init-groups \
    slurmrestd -a rest_auth/jwt "0.0.0.0:$REST_PORT"
}

start_munge() {
  [[ -s /run/secrets/munge_key ]] || die "missing secret munge_key (make cluster-up generates it)"
  install -o munge -g munge -m 0400 /run/secrets/munge_key /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --force
  wait_for "munged" munge -n
}

run_slurmdbd() {
  local pw
  pw=$(cat /run/secrets/db_password) || die "missing secret db_password"
  umask 077
  cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=$(hostname)
SlurmUser=slurm
PidFile=/run/slurmdbd/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=db
StoragePort=3306
StorageUser=slurm
StoragePass=${pw}
StorageLoc=slurm_acct_db
PrivateData=jobs,usage
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=/etc/slurm/jwt_hs256.key
CONF
  umask 022
  chown slurm:slurm /etc/slurm/slurmdbd.conf
  install -d -o slurm -g slurm /run/slurmdbd
  wait_for "MariaDB on db:3306" bash -c 'exec 3<>/dev/tcp/db/3306'
  # A restarted container keeps /run: the marker must be earned again.
  rm -f /run/minihpc-accounting.done
  # The class's learners by name and uid before slurmdbd resolves them: with PrivateData, a user
  # whose uid it never learned is shown none of their own jobs by sacct.
  minihpc-class || log "error: the class's learners could not be made here; minihpc class add N says why"
  slurmdbd -D &
  local pid=$!
  wait_for "slurmdbd to answer" sacctmgr -n list cluster
  register_accounting || die "accounting could not be applied (see above)"
  wait "$pid"
}

# The site's accounts, users and QOS (minihpc/policy.py, rendered by
# minihpc.topology); idempotent. The healthcheck waits for the marker.
register_accounting() {
  # Called under ||, where set -e does not apply: chain, so a failure leaves no marker.
  python3 /usr/local/lib/minihpc/accounting.py "$CONF_SRC/accounting.json" >&2 &&
    touch /run/minihpc-accounting.done
}

run_slurmctld() {
  install -d -o slurm -g slurm /var/spool/slurmctld
  # A new cluster's controller starts once slurmdbd holds all of its accounting,
  # which it enforces from there (Compose only starts slurmdbd first): not only
  # the cluster's row, as a QOS limit written while it starts can miss it
  # (accounting.py --applied). A restarted one starts at once, as a site's
  # does, slurmdbd or not.
  if [[ ! -e /var/spool/slurmctld/node_state ]]; then
    wait_for "slurmdbd to hold the cluster's accounting" \
      python3 /usr/local/lib/minihpc/accounting.py --applied "$CONF_SRC/accounting.json"
  fi
  # The class's learners (minihpc class), by name: squeue and sacct show names, not uids.
  # A class that cannot be made (a user's doing, perhaps) must not keep the node down: said, not fatal.
  minihpc-class || log "error: the class's learners could not be made here; minihpc class add N says why"
  exec slurmctld -D -i
}

# The NFS-style shared filesystem (nfs/): the volume at $NFS_SERVER is the
# server, root-only; the FUSE client shows its export at /shared. It must be up
# before slurmd takes jobs or the login node reports ready.
NFS_SERVER=/srv/nfs
NFS_RUN=/run/minihpc-nfs

start_nfs() {
  [[ -c /dev/fuse ]] || die "no /dev/fuse: login and compute services need devices: [/dev/fuse] and cap_add: [SYS_ADMIN]"
  [[ -d "$NFS_SERVER" ]] || die "no $NFS_SERVER: the shared volume is not mounted (docker-compose.yml, x-nfs-client)"
  chmod 0700 "$NFS_SERVER"
  # The export is a project space every user may create in (like /tmp).
  install -d -m 1777 "$NFS_SERVER/export"
  # The control file and the client's statistics are root's alone; a restarted
  # node starts with no statistics or crash record of its earlier life.
  rm -rf "$NFS_RUN"
  install -d -m 0700 "$NFS_SERVER/control" "$NFS_RUN"
  # Unmounted, /shared must not quietly become a local directory.
  install -d -m 0000 /shared
  nfs_supervise &
  wait_for "the NFS client to mount /shared" mountpoint -q /shared
  log "shared filesystem mounted: $(minihpc-nfs show | head -n1)"
}

# Runs the client; if it dies, says so loudly, clears the dead mount (no
# "Transport endpoint is not connected" left behind) and mounts again.
nfs_supervise() {
  local rc
  while :; do
    rc=0
    PYTHONPATH=/opt/minihpc /opt/minihpc/venv/bin/python -m nfs.client --backing "$NFS_SERVER/export" \
      --mountpoint /shared --control "$NFS_SERVER/control/profile.json" --node "$(hostname)" \
      --stats "$NFS_RUN/stats.json" || rc=$?
    log "error: NFS client exited with status $rc; /shared was unavailable, remounting"
    printf '%s exit %s\n' "$(date +%FT%T)" "$rc" >>"$NFS_RUN/crashes"
    fusermount3 -u -z /shared 2>/dev/null || true
    sleep 1
  done
}

# Scratch as the topology declares it (scratch.env), on every start: Docker
# re-creates the tmpfs on a restart without its mode= (Engine 20.10), and a
# restarted node must be indistinguishable from a fresh one: that size, that
# mode, root's, empty.
prepare_scratch() {
  local problem
  # shellcheck source=/dev/null
  . "$CONF_SRC/scratch.env" || die "no $CONF_SRC/scratch.env: start the cluster with minihpc up"
  mountpoint -q "$SCRATCH" || die "no tmpfs at $SCRATCH: login and compute services need the one compose.nodes.yml declares"
  mount -o remount,size="${SCRATCH_MB}m" "$SCRATCH" || die "cannot size $SCRATCH to ${SCRATCH_MB} MiB"
  find "$SCRATCH" -mindepth 1 -delete
  chown root:root "$SCRATCH"
  chmod "$SCRATCH_MODE" "$SCRATCH"
  problem=$(minihpc-healthcheck scratch) || die "$problem"
  # Every user's own directory, made by root before any user could (/scratch is closed to them).
  minihpc-scratchdir --all || die "cannot make the users' directories on $SCRATCH"
  log "scratch: $SCRATCH, tmpfs of ${SCRATCH_MB} MiB, mode $SCRATCH_MODE, a private directory per user"
}

# Every user's home as useradd made it in the image; one lost since is made again.
prepare_homes() {
  local user uid gid home
  while IFS=: read -r user _ uid gid _ home _; do
    ((uid >= 1000 && uid < 60000)) && [[ ! -d "$home" ]] || continue
    log "home $home of $user was missing: made again from /etc/skel"
    cp -a /etc/skel "$home"
    chown -R "$uid:$gid" "$home"
    chmod 0700 "$home"
  done </etc/passwd
}

run_slurmd() {
  install -d /var/spool/slurmd
  link_gpus
  prepare_scratch
  prepare_homes
  # A class that cannot be made (a user's doing, perhaps) must not keep the node down: said, not fatal.
  minihpc-class || log "error: the class's learners could not be made here; minihpc class add N says why"
  start_nfs
  wait_for "slurmctld to answer" scontrol ping
  exec slurmd -D
}

# sshd with this cluster's host key; the one user it lets in (AllowUsers, set
# in the image) logs in with the key made for this cluster. Logs to the node's.
start_sshd() {
  local user
  user=$(awk '$1 == "AllowUsers" {print $2}' /etc/ssh/sshd_config.d/minihpc.conf)
  [[ -s /run/secrets/ssh_host_key && -s /run/secrets/ssh_user_pub ]] ||
    die "missing secrets ssh_host_key/ssh_user_pub (minihpc up makes them)"
  install -m 0600 /run/secrets/ssh_host_key /etc/ssh/ssh_host_ed25519_key
  install -m 0644 /run/secrets/ssh_user_pub "/etc/ssh/authorized_keys/$user"
  install -d -m 0755 /run/sshd
  /usr/sbin/sshd -t || die "sshd's configuration is invalid"
  /usr/sbin/sshd -D -e &
  log "sshd started: key login for $user and the class's learners only"
}

run_login() {
  # The software share's tree (minihpc modules add), root's: an empty share gets it here.
  install -d -m 0755 -o root -g root /opt/site/local /opt/site/local/modulefiles /opt/site/local/software
  # Snakemake runs here, checked once per start: the healthcheck only looks for
  # this file (snakemake --version costs 1.2 s of CPU, and the healthcheck runs
  # every 2 s: a fifth of a 2-core host, all the time).
  rm -f /run/minihpc-snakemake.version
  snakemake --version >/run/minihpc-snakemake.version.new ||
    die "snakemake --version fails on the login node: rebuild the image (minihpc up)"
  mv /run/minihpc-snakemake.version.new /run/minihpc-snakemake.version
  prepare_scratch
  prepare_homes
  start_nfs
  # The learners' keys and /shared directories too: after the mount, before sshd.
  minihpc-class --login || log "error: the class's learners could not be made here; minihpc class add N says why"
  start_sshd
  wait_for "slurmctld to answer" scontrol ping
  log "login node ready"
  exec sleep infinity
}

# Secrets arrive root-owned and 0400 (cluster/secrets.sh); their directory is
# closed to users as well, whatever a host left them as.
chmod 0700 /run/secrets
link_config
start_munge
case "$ROLE" in
  slurmdbd) install_jwt_key; run_slurmdbd ;;
  slurmctld) install_jwt_key; run_slurmctld ;;
  slurmrestd) run_slurmrestd ;;
  slurmd) run_slurmd ;;
  login) run_login ;;
  *) die "unknown role '$ROLE' (expected slurmdbd, slurmctld, slurmrestd, slurmd or login)" ;;
esac
