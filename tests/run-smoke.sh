#!/usr/bin/env bash
# make smoke SLURM=RELEASE: each capability proven on another Slurm release
# than the default (bring-up, the course's Core 1 and staging, enforcement of
# memory, time, partitions and QOS, minihpc run): the cluster tests marked
# `smoke`, side by side on a cluster of that release, which it brings up (the
# default release's cluster runs them all: make test). The cluster stays up.
# Usage: run-smoke.sh PYTHON RELEASE [PYTEST ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
py=${1:?usage: tests/run-smoke.sh PYTHON RELEASE [PYTEST ARGS...]}
release=${2:?usage: tests/run-smoke.sh PYTHON RELEASE [PYTEST ARGS...] (e.g. 22.05)}
shift 2
"$py" -m minihpc up --slurm "$release" || exit $?
exec "$py" -m pytest -m "cluster and smoke and not alone" -n "${SMOKE_WORKERS:-4}" --dist loadscope \
  --no-loadscope-reorder "$@" tests
