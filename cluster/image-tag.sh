#!/usr/bin/env bash
# Content tag of the cluster's images: a hash of the Dockerfile, of every file
# its COPY lines name and of the cluster's release.env (its Slurm release's
# base and packages, written by minihpc/configs.py), then the release's own
# tag (e.g. slurm24.11). Same inputs, same tag: warm starts skip the build
# entirely, and each release's images sit beside the others'.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
release_env=${MINIHPC_RUN_DIR:-$root/.run}/release.env
[[ -f $release_env ]] || { echo "image-tag: no $release_env: bring the cluster up with minihpc up" >&2; exit 2; }
# shellcheck source=/dev/null
. "$release_env"
cd "$root"
mapfile -t sources < <(awk '$1 == "COPY" { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' cluster/Dockerfile)
# A COPY of a directory hashes the files under it.
mapfile -t inputs < <(find cluster/Dockerfile "${sources[@]}" -type f -not -name '*.pyc' | LC_ALL=C sort)
printf '%s-%s\n' "$(sha256sum "${inputs[@]}" "$release_env" | sed "s| $release_env\$| release.env|" | sha256sum | cut -c1-12)" "$RELEASE_TAG"
