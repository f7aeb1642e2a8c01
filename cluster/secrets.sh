#!/usr/bin/env bash
# Per-cluster secrets, made at first start and kept in the git-ignored run
# directory (never in git or an image layer): the munge key and the DB password.
set -euo pipefail
dir=${1:?usage: secrets.sh <secrets-dir>}
umask 077
mkdir -p "$dir"
if [[ ! -s "$dir/munge_key" ]]; then
  dd if=/dev/urandom of="$dir/munge_key" bs=1024 count=1 status=none
  echo "secrets: generated munge key" >&2
fi
if [[ ! -s "$dir/db_password" ]]; then
  head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/db_password"
  echo "secrets: generated database password" >&2
fi
