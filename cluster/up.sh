#!/usr/bin/env bash
# make cluster-up: bring the cluster to the requested size and wait until it is
# ready. Re-running with another NODES reconciles a running cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run=${MINIHPC_RUN_DIR:-$root/.run}
export MINIHPC_RUN_DIR=$run
# The interpreter minihpc is installed in (the CLI passes its own).
py=${MINIHPC_PYTHON:-python3}
READY_TIMEOUT=${READY_TIMEOUT:?run through minihpc up}
log() { printf 'cluster-up: %s\n' "$*" >&2; }
started=$(date +%s.%N)

topology() { "$py" -m minihpc.topology --run-dir "$run" --compose-file docker-compose.yml "$@"; }

# Validate sizing and the NFS profile before anything starts.
read -r -a nodes <<<"$(topology --print-nodes)"
NFS_PROFILE=${NFS_PROFILE:-}
if [[ -n "$NFS_PROFILE" ]]; then
  python3 -m nfs.ctl check "$NFS_PROFILE" >/dev/null || exit 2
fi

if ! docker info >/dev/null 2>&1; then
  log "docker engine not reachable: running cluster/bootstrap-host.sh"
  cluster/bootstrap-host.sh
fi
cluster/base-image.sh
cluster/secrets.sh "$run/secrets"

ctld_running=false
[[ -f "$run/compose.nodes.yml" ]] && [[ -n "$(cluster/compose.sh ps -q --status running slurmctld 2>/dev/null)" ]] && ctld_running=true
changed=$(topology)

tag=$(cluster/image-tag.sh)
if ! docker image inspect "minihpc/slurm:$tag" "minihpc/db:$tag" >/dev/null 2>&1; then
  log "building images minihpc/{db,slurm}:$tag (layers are cached; a cold build takes a few minutes)"
  MINIHPC_PIP_CA=$(cluster/pipconf.sh ca)
  [[ -n "$MINIHPC_PIP_CA" ]] || MINIHPC_PIP_CA=/dev/null
  export MINIHPC_PIP_CA
  while IFS='=' read -r k v; do export "$k=$v"; done < <(cluster/pipconf.sh args)
  cluster/compose.sh build db slurmctld
fi

log "starting ${#nodes[@]} compute node(s): ${nodes[*]}"
cluster/compose.sh up -d --remove-orphans --quiet-pull
if [[ "$ctld_running" == true && "$changed" == changed ]]; then
  log "topology changed: scontrol reconfigure"
  cluster/compose.sh exec -T slurmctld scontrol reconfigure
fi
python3 cluster/ready.py --timeout "$READY_TIMEOUT" --started "$started" "${nodes[@]}"
if [[ "$ctld_running" == true ]]; then
  # A kept database catches up with the site's accounts and QOS (a fresh one got them at start).
  cluster/compose.sh exec -T slurmdbd python3 /usr/local/lib/minihpc/accounting.py /etc/minihpc/slurm/accounting.json
fi
if [[ -n "$NFS_PROFILE" ]]; then
  cluster/compose.sh exec -T login minihpc-nfs set "$NFS_PROFILE" | head -n1 >&2
fi
cluster/compose.sh exec -T login minihpc-nfs show | head -n1 | sed 's/^/cluster-up: shared filesystem: NFS /' >&2
