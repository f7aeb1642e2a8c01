"""bench: the benchmark scripts, each writing bench/results/<name>.json and
<name>.md; `bench report` renders the .md again from the JSON."""

from __future__ import annotations

import argparse
import subprocess
import sys

from minihpc import ROOT

# Modules of the tree's bench package, run from the tree (where `bench` is found).
SCRIPTS = {"cluster": "cluster_bringup", "nfs": "nfs_client", "staging": "staging", "faults": "faults",
           "throughput": "throughput", "suite": "suite", "prove": "prove", "mpi": "mpi", "plugin": "plugin_suite",
           "class": "classroom", "report": "report"}


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure: bring-up, the NFS client, staging, healing from faults, "
                                     "throughput, the test suite, a proof, MPI",
                       description="cluster: cold/warm bring-up and idle memory; nfs: the NFS client against "
                                   "the raw volume (root, a loop device); staging: staged against direct job "
                                   "on the cluster; faults: how long each fault takes to heal, and a workflow "
                                   "with a node killed against a clean one; throughput: trivial jobs per second "
                                   "and a fan-out local, through slurm and grouped, before and after the "
                                   "scheduler tuning; suite: where the last make test's time went (report "
                                   "[--name N]); prove: a proof against one plain run; mpi: the MPI demo on 1..6 "
                                   "ranks and what `module load` costs a job; class: adding and removing 30 "
                                   "learners, and slurmrestd's cost; plugin: the SLURM plugin's own "
                                   "suite against the cluster (--enforce LIMITS). Results go to "
                                   "bench/results/<name>.json and <name>.md; report [NAME ...] renders the .md "
                                   "again from the JSON, measuring nothing.")
    p.add_argument("name", choices=list(SCRIPTS))
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script (e.g. --reps 3)")
    p.set_defaults(run=bench)


def bench(a: argparse.Namespace) -> int:
    return subprocess.run([sys.executable, "-m", f"bench.{SCRIPTS[a.name]}", *a.args], cwd=ROOT,
                          check=False).returncode
