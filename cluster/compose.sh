#!/usr/bin/env bash
# The one way this project calls Docker Compose: both topology files and the
# image tag derived from the image inputs, so every caller sees the same cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
MINIHPC_TAG=$("$root/cluster/image-tag.sh")
export MINIHPC_TAG
exec docker compose --project-directory "$root" -f "$root/docker-compose.yml" -f "$root/.run/compose.nodes.yml" "$@"
