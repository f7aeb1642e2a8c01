#!/usr/bin/env bash
# make smoke SLURM=RELEASE: each capability proven on another Slurm release
# than the default (bring-up, the course's Core 1 and staging, enforcement of
# memory, time, partitions and QOS, minihpc run): the cluster tests marked
# `smoke`. make smoke SNAKEMAKE=VERSION: what a Snakemake stack changes
# (Core 1, staging through the fs plugin, minihpc run) on another pinned
# set than the default, on a cluster enforcing no limits: the tests marked
# `stack`, with what such a site allows (test_enforce.py). Either on a cluster it
# brings up (the default's runs them with everything else: make test). As
# make test does: side by side first, then those marked `alone` one at a
# time, after tests/quiesce.py. The cluster stays up.
# Usage: run-smoke.sh PYTHON RELEASE|"" SNAKEMAKE|"" [PYTEST ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/keep-logs.sh
. tests/keep-logs.sh
usage="usage: tests/run-smoke.sh PYTHON RELEASE|'' SNAKEMAKE|'' [PYTEST ARGS...] (e.g. '' 22.05 '')"
[[ $# -ge 3 ]] || { echo "$usage" >&2; exit 2; }
py=$1 release=$2 snakemake=$3
shift 3
# Versions only (they name a directory below; minihpc up says which there are).
[[ $release =~ ^[0-9.]*$ && $snakemake =~ ^[0-9.]*$ ]] ||
  { echo "run-smoke: SLURM=$release SNAKEMAKE=$snakemake: give versions, e.g. SLURM=22.05 or SNAKEMAKE=8.30.0" >&2; exit 2; }
up=() marker=smoke
[[ -z $release ]] || up+=(--slurm "$release")
# A stack's cluster stands for another site: one that enforces no limits
# (as the SLURM plugin's own CI cluster), which test_enforce.py proves.
[[ -z $snakemake ]] || { up+=(--snakemake "$snakemake" --enforce none --def-mem-per-cpu 700); marker=stack; }
[[ ${#up[@]} -gt 0 ]] || { echo "$usage: name a release or a Snakemake" >&2; exit 2; }
# The daemons' logs, as make test keeps them: .suite/smoke-<release or stack>/.
suite=.suite/smoke-${release}${release:+${snakemake:+-}}${snakemake}
rm -rf "$suite" && mkdir -p "$suite"
"$py" -m minihpc up "${up[@]}" || exit $?
rc=0
"$py" -m pytest -m "cluster and $marker and not alone" -n "${SMOKE_WORKERS:-7}" --dist loadscope \
  --no-loadscope-reorder "$@" tests || rc=$?
keep_logs side-by-side "$rc"
PYTHONPATH=. "$py" tests/quiesce.py || rc=1
alone=0
"$py" -m pytest -m "cluster and $marker and alone" "$@" tests || alone=$?
# 5: none is marked both (pytest's "no tests collected"), which is no failure.
[[ $alone -eq 0 || $alone -eq 5 ]] || { rc=$alone; keep_logs alone "$alone"; }
exit "$rc"
