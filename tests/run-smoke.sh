#!/usr/bin/env bash
# make smoke SLURM=RELEASE: each capability proven on another Slurm release
# than the default (bring-up, the course's Core 1 and staging, enforcement of
# memory, time, partitions and QOS, minihpc run): the cluster tests marked
# `smoke`, on a cluster of that release, which it brings up (the default
# release's cluster runs them with everything else: make test). As make test
# does: side by side first, then those marked `alone` one at a time, after
# tests/quiesce.py. The cluster stays up.
# Usage: run-smoke.sh PYTHON RELEASE [PYTEST ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
py=${1:?usage: tests/run-smoke.sh PYTHON RELEASE [PYTEST ARGS...]}
release=${2:?usage: tests/run-smoke.sh PYTHON RELEASE [PYTEST ARGS...] (e.g. 22.05)}
shift 2
"$py" -m minihpc up --slurm "$release" || exit $?
rc=0
"$py" -m pytest -m "cluster and smoke and not alone" -n "${SMOKE_WORKERS:-5}" --dist loadscope \
  --no-loadscope-reorder "$@" tests || rc=$?
PYTHONPATH=. "$py" tests/quiesce.py || rc=1
alone=0
"$py" -m pytest -m "cluster and smoke and alone" "$@" tests || alone=$?
# 5: none is marked both (pytest's "no tests collected"), which is no failure.
[[ $alone -eq 0 || $alone -eq 5 ]] || rc=$alone
exit "$rc"
