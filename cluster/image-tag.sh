#!/usr/bin/env bash
# Content tag of the images: a hash of the Dockerfile and of every file its
# COPY lines name. Same inputs, same tag: warm starts skip the build entirely.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mapfile -t sources < <(awk '$1 == "COPY" { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' cluster/Dockerfile)
# A COPY of a directory hashes the files under it.
mapfile -t inputs < <(find cluster/Dockerfile "${sources[@]}" -type f -not -name '*.pyc' | LC_ALL=C sort)
sha256sum "${inputs[@]}" | sha256sum | cut -c1-12
