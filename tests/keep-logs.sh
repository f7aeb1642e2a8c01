# shellcheck shell=bash
# Sourced by tests/run-suite.sh and tests/run-smoke.sh (with $suite and $py set):
# What the daemons said during a phase, kept in .suite/ (the alone phase
# recreates containers, and their logs with them); on a failure, the lines
# about nodes and jobs going wrong are printed, for a cause that was the
# cluster's (a CI run keeps only its output).
keep_logs() {
  "$py" -m minihpc logs --no-follow --tail all --timestamps >"$suite/logs-$1.txt" 2>&1 || true
  if [[ $2 -ne 0 ]]; then
    printf '\n== the cluster during the failed phase (%s): nodes and jobs going wrong ==\n' "$1"
    grep -E 'NODE_FAIL|not responding|DOWN|[Dd]rain|Kill task|[Uu]nkillable|[Ll]aunch|timed out|requeue|[Pp]rolog|[Ee]pilog|scratchdir:|nodecheck:|error' \
      "$suite/logs-$1.txt" | tail -n 120
  fi
}
