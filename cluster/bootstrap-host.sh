#!/usr/bin/env bash
# Make this host able to run the cluster: a Docker engine, Compose v2 and
# debootstrap, fuse3 and openssh-client, installed from Debian's packages, and a running dockerd.
# Idempotent: re-running on a ready host changes nothing.
# `--restart-engine` restarts the engine instead, as a host reboot would.
set -euo pipefail

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/minihpc-dockerd.log}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}

manual_steps() {
  cat >&2 <<'STEPS'
bootstrap: this host needs a Docker engine with Compose v2. On Debian 12 as root:
  apt-get install docker.io debootstrap fuse3
  # Compose v2: Debian 13's docker-compose package (static binary) installs on Debian 12:
  apt-get download docker-compose   # from a trixie apt source
  dpkg -i docker-compose_*.deb
  dockerd >/var/log/dockerd.log 2>&1 &   # when no init system runs it
Then re-run: make cluster-up
STEPS
}

require_root_debian() {
  if [[ $(id -u) -ne 0 ]] || [[ ! -r /etc/debian_version ]]; then
    log "cannot install automatically (needs root on Debian)."
    manual_steps
    exit 1
  fi
}

apt_install() {
  log "installing from Debian's packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; } ||
    die "apt-get install $* failed"
}

# The host's own Debian mirror, as apt knows it (no mirror names in this project).
host_mirror() {
  apt-cache policy | awk '$3 ~ /\/main$/ && $2 ~ /^https?:/ && $3 !~ /security/ {print $2; exit}'
}

# Compose v2 is not packaged for Debian 12; Debian 13's package is a static
# binary that installs with dpkg. Fetched with a private apt state so the
# host's own sources stay untouched.
install_compose_from_trixie() {
  local mirror tmp deb
  mirror=$(host_mirror)
  [[ -n "$mirror" ]] || die "no Debian mirror found in the host's apt configuration"
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt's _apt user downloads into it
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$mirror" >"$tmp/sources.list"
  local opts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::archives=$tmp/archives" -o "APT::Get::List-Cleanup=0")
  log "fetching docker-compose (Compose v2) from Debian 13 via $mirror"
  apt-get "${opts[@]}" update -q >/dev/null || die "apt-get update for trixie failed"
  (cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null) || die "apt-get download docker-compose failed"
  deb=$(ls "$tmp"/docker-compose_*.deb)
  dpkg -i --force-depends "$deb" >/dev/null || die "dpkg -i $deb failed"
  rm -rf "$tmp"
}

docker_up() { docker info >/dev/null 2>&1; }

start_dockerd() {
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    # A dockerd left from an earlier run may hold a stale pid file.
    if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
      rm -f /var/run/docker.pid
    fi
    # ...and the containerd it started, orphaned when it was killed mid-restart: a new dockerd
    # cannot reach it ("dial unix .../containerd.sock: timeout") and never answers.
    if ! pgrep -x dockerd >/dev/null && pgrep -x containerd >/dev/null; then
      log "stopping the containerd a dead dockerd left"
      pkill -x containerd || true
      sleep 2
    fi
    pgrep -x dockerd >/dev/null || { log "starting dockerd (log: $DOCKERD_LOG)"; nohup dockerd >"$DOCKERD_LOG" 2>&1 & }
  fi
  local i
  for ((i = 0; i < DOCKERD_WAIT; i++)); do
    docker_up && { log "docker engine is up"; return 0; }
    sleep 1
  done
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  die "dockerd did not answer within ${DOCKERD_WAIT}s"
}

# As a host reboot does to the cluster: the engine stops (and every container
# with it) and starts again; containers come back by their restart policy.
restart_engine() {
  local pid i
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    log "restarting the docker engine (systemctl restart docker)"
    systemctl restart docker
  else
    pid=$(cat /var/run/docker.pid 2>/dev/null || pgrep -xo dockerd) || die "no dockerd runs here"
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for ((i = 0; i < DOCKERD_WAIT; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) did not stop within ${DOCKERD_WAIT}s"
  fi
  start_dockerd
}

main() {
  if [[ "${1:-}" == --restart-engine ]]; then
    [[ $(id -u) -eq 0 ]] || die "restarting the docker engine needs root"
    restart_engine
    return
  fi
  [[ $# -eq 0 ]] || die "unknown argument '$1'; usage: bootstrap-host.sh [--restart-engine]"
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  # libfuse3 and fusermount3: the NFS client's host-side integration tests mount it here.
  command -v fusermount3 >/dev/null || missing+=(fuse3)
  # ssh and ssh-keygen: the login node's SSH keys are made here, and `minihpc ssh` and `site check` connect with it.
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  if ((${#missing[@]})); then require_root_debian; apt_install "${missing[@]}"; fi
  if ! docker compose version >/dev/null 2>&1; then require_root_debian; install_compose_from_trixie; fi
  docker_up || { [[ $(id -u) -eq 0 ]] || { manual_steps; exit 1; }; start_dockerd; }
  log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version --short | sed 's/^/compose /')"
}

main "$@"
