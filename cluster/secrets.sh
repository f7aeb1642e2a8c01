#!/usr/bin/env bash
# Per-cluster secrets, made at first start and kept in the git-ignored run
# directory (never in git or an image layer): the munge key, the DB password,
# the login node's SSH host key and the lab user's SSH key (its private half
# stays the host user's, for `minihpc ssh` and `minihpc site check`).
# They end up root-owned and 0400 whoever runs this: Compose bind-mounts them
# into the nodes with the host file's owner, and a host user with uid 1000
# would otherwise own the munge key as the lab user on every node.
set -euo pipefail
dir=${1:?usage: secrets.sh <secrets-dir>}
BASE_IMAGE=${BASE_IMAGE:?set by minihpc up: the base image of the Slurm release it runs}
log() { printf 'secrets: %s\n' "$*" >&2; }
umask 077
mkdir -p "$dir"
if [[ ! -s "$dir/munge_key" ]]; then
  dd if=/dev/urandom of="$dir/munge_key" bs=1024 count=1 status=none
  log "generated munge key"
fi
if [[ ! -s "$dir/jwt_hs256.key" ]]; then
  # What slurmctld and slurmdbd sign and check REST API tokens with (auth/jwt).
  dd if=/dev/urandom of="$dir/jwt_hs256.key" bs=32 count=1 status=none
  log "generated the JWT signing key"
fi
if [[ ! -s "$dir/db_password" ]]; then
  head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/db_password"
  log "generated database password"
fi

command -v ssh-keygen >/dev/null || { log "ssh-keygen is missing: run cluster/bootstrap-host.sh (openssh-client)"; exit 1; }
if [[ ! -s "$dir/ssh_host_ed25519_key" ]]; then
  ssh-keygen -q -t ed25519 -N '' -C minihpc-login -f "$dir/ssh_host_ed25519_key"
  log "generated the login node's SSH host key"
fi
if [[ ! -s "$dir/ssh_user_ed25519" ]]; then
  ssh-keygen -q -t ed25519 -N '' -C "minihpc lab user" -f "$dir/ssh_user_ed25519"
  log "generated the lab user's SSH key"
fi

files=("$dir/munge_key" "$dir/db_password" "$dir/ssh_host_ed25519_key" "$dir/jwt_hs256.key")
if [[ $(id -u) -eq 0 ]]; then
  chown 0:0 "${files[@]}"
  chmod 0400 "${files[@]}"
elif [[ "$(stat -c '%u %a' "${files[@]}" | sort -u)" != "0 400" ]]; then
  # Not root here, but the Docker daemon is: it hands the files to root. The
  # directory stays ours, so `make destroy` can still remove them.
  log "handing the secrets to root through the Docker daemon (this user is $(id -un))"
  docker run --rm --network none -v "$(cd "$dir" && pwd):/secrets" "$BASE_IMAGE" \
    sh -c 'cd /secrets && f="munge_key db_password ssh_host_ed25519_key jwt_hs256.key" && chown 0:0 $f && chmod 0400 $f'
fi
