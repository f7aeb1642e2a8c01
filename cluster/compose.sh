#!/usr/bin/env bash
# The one way this project calls Docker Compose: both topology files, the run
# directory (generated configs and secrets; the minihpc CLI exports
# MINIHPC_RUN_DIR) and the image tag derived from the image inputs, so every
# caller sees the same cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
MINIHPC_RUN_DIR=${MINIHPC_RUN_DIR:-$root/.run}
MINIHPC_TAG=$("$root/cluster/image-tag.sh")
export MINIHPC_RUN_DIR MINIHPC_TAG
exec docker compose --project-directory "$root" -f "$root/docker-compose.yml" -f "$MINIHPC_RUN_DIR/compose.nodes.yml" "$@"
