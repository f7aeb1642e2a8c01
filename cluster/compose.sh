#!/usr/bin/env bash
# The one way this project calls Docker Compose: the cluster's name, both
# topology files, the run directory (generated configs and secrets; the minihpc CLI exports
# MINIHPC_RUN_DIR), the cluster's Slurm release (release.env there, written by
# minihpc/configs.py: which Debian base and which images) and the image tag
# derived from the image inputs and that release, so every caller sees the
# same cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# The cluster's name (its Compose project; minihpc/__init__.py says what it
# names): a named one's run directory is not the default's, and only minihpc knows it.
MINIHPC_CLUSTER=${MINIHPC_CLUSTER:-minihpc}
[[ $MINIHPC_CLUSTER == minihpc || -n ${MINIHPC_RUN_DIR:-} ]] ||
  { echo "compose: MINIHPC_CLUSTER=$MINIHPC_CLUSTER and no MINIHPC_RUN_DIR: use minihpc (e.g. minihpc logs)" >&2; exit 2; }
MINIHPC_RUN_DIR=${MINIHPC_RUN_DIR:-$root/.run}
release_env=$MINIHPC_RUN_DIR/release.env
[[ -f $release_env ]] || { echo "compose: no $release_env: bring the cluster up with minihpc up" >&2; exit 2; }
# shellcheck source=/dev/null
. "$release_env"
# A release.env from before Snakemake stacks has no LOCK: that cluster runs the default set.
LOCK=${LOCK:-$SUITE}
MINIHPC_TAG=$("$root/cluster/image-tag.sh")
export MINIHPC_RUN_DIR MINIHPC_TAG SUITE BASE_IMAGE RELEASE_PACKAGES LOCK
exec docker compose --project-name "$MINIHPC_CLUSTER" --project-directory "$root" -f "$root/docker-compose.yml" -f "$MINIHPC_RUN_DIR/compose.nodes.yml" "$@"
