#!/usr/bin/env bash
# make test: the whole suite. The host-only tests (unit and integration: no
# cluster, marker "not cluster") run in the background beside the cluster's
# bring-up and its tests, which mostly wait on SLURM; their output follows the
# cluster tests'. Fails if either half fails. Usage: run-suite.sh PYTHON [PYTEST ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
py=${1:?usage: tests/run-suite.sh PYTHON [PYTEST ARGS...]}
shift

log=$(mktemp -t minihpc-host-tests.XXXXXX)
# No cache plugin: the two sessions would both write .pytest_cache.
"$py" -m pytest -m "not cluster" -p no:cacheprovider "$@" tests >"$log" 2>&1 </dev/null &
host=$!
stop_host() { kill "$host" 2>/dev/null; wait "$host" 2>/dev/null; rm -f "$log"; }
trap stop_host EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

rc=0
python3 -m minihpc up || rc=$?
if [[ $rc -eq 0 ]]; then
  "$py" -m pytest -m cluster "$@" tests || rc=$?
fi
wait "$host"
host_rc=$?
printf '\n== host-only tests (unit, integration), run beside the cluster tests ==\n'
cat "$log"
if [[ $rc -ne 0 ]]; then exit "$rc"; fi
exit "$host_rc"
