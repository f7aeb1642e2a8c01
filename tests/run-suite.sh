#!/usr/bin/env bash
# make test: the whole suite. The host-only tests (unit and integration: no
# cluster, marker "not cluster") run in the background beside the alone
# phase, which mostly waits on SLURM (its cores a third busy), niced; their
# output follows the cluster tests'. (Beside the side-by-side phase, whose
# cores are 80 to 100 % busy, they took CPU from it.)
# The cluster tests run in two phases on the one cluster: those that only
# read it or work in their own directory with their own jobs side by side
# (xdist, SHARED_WORKERS processes, a file's tests together), then those
# marked `alone` (they restart, resize, cut, fill or flood it, or need its
# queue to themselves) one at a time, after tests/quiesce.py has cleared what
# the first phase left. Fails if any part fails; a failing first phase still
# lets the second run. Usage: run-suite.sh PYTHON [PYTEST ARGS...]
#
# BESIDE (.ci/run sets it: .ci/beside): a command started once the tests
# that restart the Docker engine (marker `engine`) and those that need the
# machine quiet (marker `quiet`: SLURM's timers judged, containers
# recreated) are done, beside the rest of the alone phase, which waits on
# SLURM with its cores two thirds idle:
# in CI, the other Slurm releases' and Snakemake stacks' smokes and the
# Action, each on a cluster of its own. Its output follows the suite's; its
# exit joins the suite's.
#
# The run's timeline goes to .suite/ (phases, each test's start and end,
# the Slurm jobs): bench/suite.py report turns it into where the time went.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/keep-logs.sh
. tests/keep-logs.sh
py=${1:?usage: tests/run-suite.sh PYTHON [PYTEST ARGS...]}
shift

suite=.suite  # not under .run: make destroy (as .ci/run does) removes that
rm -rf "$suite" && mkdir -p "$suite"
export MINIHPC_SUITE_LOG=$PWD/$suite/tests.jsonl
now() { date +%s.%N; }
phase() { printf '{"phase": "%s", "start": %s, "end": %s}\n' "$1" "$2" "$(now)" >>"$suite/phases.jsonl"; }

# How busy the host's cores were, every 2 s (bench/suite.py: a phase near
# 100 % waits on CPU, not on the cluster).
( while :; do printf '%s %s\n' "$(now)" "$(head -n 1 /proc/stat)"; sleep 2; done >>"$suite/cpu.txt" ) &
cpu=$!

log=$(mktemp -t minihpc-host-tests.XXXXXX)
host=
# No cache plugin: the two sessions would both write .pytest_cache. Niced:
# they mostly wait (a third of a core), and then take only what is idle.
start_host() {
  ( t=$(now); nice -n 10 "$py" -m pytest -m "not cluster" -p no:cacheprovider "$@" tests >"$log" 2>&1 </dev/null
    rc=$?; phase "host tests" "$t"; exit $rc ) &
  host=$!
}
beside= beside_log=$suite/beside.log
start_beside() {
  [[ -n ${BESIDE:-} ]] || return 0
  # A process group of its own, to be stopped whole (stop_host).
  ( t=$(now); rc=0; setsid bash -c "$BESIDE" >"$beside_log" 2>&1 </dev/null || rc=$?; phase "beside" "$t"
    exit $rc ) &
  beside=$!
}
# BESIDE's command (its own group: it stops what it started), and the host
# tests' pytest too (nice execs it: the subshell's child), not only the subshell.
stop_host() {
  [[ -z $beside ]] || pkill -TERM -P "$beside" 2>/dev/null
  [[ -z $host ]] || pkill -TERM -P "$host" 2>/dev/null
  kill ${host:+"$host"} "$cpu" 2>/dev/null; [[ -z $host ]] || wait "$host" 2>/dev/null
  rm -f "$log"
}
trap stop_host EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

rc=0
t=$(now)
python3 -m minihpc up || rc=$?
phase "bring-up" "$t"

if [[ $rc -eq 0 ]]; then
  t=$(now)
  shared_rc=0
  "$py" -m pytest -m "cluster and not alone and not smoke_only" -n "${SHARED_WORKERS:-7}" --dist loadscope --no-loadscope-reorder "$@" tests || shared_rc=$?
  phase "cluster tests, side by side" "$t"
  keep_logs side-by-side "$shared_rc"
  [[ $shared_rc -eq 0 ]] || rc=$shared_rc
  start_host "$@"
  t=$(now)
  alone_rc=0
  PYTHONPATH=. "$py" tests/quiesce.py || alone_rc=1
  # The tests that restart the Docker engine first, then those that need the machine
  # quiet (marker `quiet`), then the others, with BESIDE beside them.
  # (5: a filter left none of one part, which is no failure.)
  for part in "engine" "quiet and not engine" "not quiet and not engine"; do
    r=0
    "$py" -m pytest -m "cluster and alone and $part and not smoke_only" "$@" tests || r=$?
    [[ $r -eq 0 || $r -eq 5 ]] || alone_rc=$r
    [[ $part != "quiet and not engine" ]] || start_beside
  done
  phase "cluster tests, alone" "$t"
  keep_logs alone "$alone_rc"
  [[ $alone_rc -eq 0 ]] || rc=$alone_rc
  "$py" -m bench.suite collect "$suite" || echo "run-suite: could not list the run's Slurm jobs (bench/suite.py collect)" >&2
else
  start_host "$@"
fi
wait "$host"
host_rc=$?
host=  # reaped: its pid may be another process's by the time the EXIT trap runs
beside_rc=0
if [[ -n $beside ]]; then
  t=$(now)
  wait "$beside" || beside_rc=$?
  beside=
  phase "waiting for beside" "$t"
fi
printf '\n== host-only tests (unit, integration), run beside the alone phase ==\n'
cat "$log"
if [[ -f $beside_log ]]; then
  printf '\n== beside the alone phase: %s (exit %s) ==\n' "$BESIDE" "$beside_rc"
  cat "$beside_log"
fi
printf '\n== where the time went (bench/suite.py report) ==\n'
"$py" -m bench.suite report "$suite" --top 15 || true
if [[ $rc -ne 0 ]]; then exit "$rc"; fi
if [[ $host_rc -ne 0 ]]; then exit "$host_rc"; fi
exit "$beside_rc"
