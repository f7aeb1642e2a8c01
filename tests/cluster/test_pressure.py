"""Scheduler pressure on the live cluster: the pressure workflow through
profiles/slurm (minihpc pressure), and the other user's busy load (minihpc
busy) as the lab user meets it: bounded, and out of the lab user's reach."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Cluster, assert_passed, eventually

from minihpc import PROOF_DIR, busy
from minihpc.cluster import Cluster as Client
from minihpc.course.labctl import Labs
from minihpc.course.pressure import pressure

ROOT = Path(__file__).resolve().parents[2]
# Three times the cluster's CPUs, enough to queue and pend for both reasons; `make pressure` runs 200.
JOBS = 12


# Alone: it fills every CPU, and proves it from its own jobs (any other job would hold one).
@pytest.mark.alone
def test_the_pressure_workflow_fills_the_cluster_and_every_job_completes(cluster: Cluster, labs: Labs) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core = pressure(labs, prefix="test-pressure", jobs=JOBS)
    if not all(c.ok for c in core.checks):
        print(cluster.story(since))  # a job not COMPLETED: what the cluster said meanwhile
    assert_passed(core)
    proof = (PROOF_DIR / "test-pressure.txt").read_text()
    capacity = cluster.facts.total_cpus
    assert f"# most CPUs in use at once (sacct): {capacity} of {capacity}" in proof, proof[-1500:]
    # Drawn with this host's matplotlib: the run's picture beside the proof.
    svg = (PROOF_DIR / "test-pressure-timeline.svg").read_text()
    assert f"({JOBS} jobs; {len(cluster.facts.nodes)} nodes x {cluster.facts.cpus} CPUs)" in svg
    assert (PROOF_DIR / "test-pressure-timeline.png").stat().st_size > 10_000


# Alone: the load holds every CPU but one, and must hold them all at once to be judged.
@pytest.mark.alone
def test_the_busy_load_is_the_other_users_and_out_of_the_lab_users_reach(client: Client) -> None:
    f = client.facts
    load = busy.start(client, minutes=2)
    try:
        eventually(lambda: sum(t["State"] == "RUNNING" for t in busy.running(client)) == load.cpus, timeout=60,
                   what=f"the load to hold {load.cpus} CPUs")
        rows = client.root(f"squeue -h -j {load.job_id} -o '%u|%q|%a' | sort -u").out.split()
        assert rows == [f"{f.other_user}|{busy.QOS}|{f.other_account}"], rows
        # The lab user can neither cancel nor change another user's jobs, nor start a load of their own.
        for cmd in (f"scancel {load.job_id}", f"scontrol update jobid={load.job_id} priority=1",
                    f"scontrol hold {load.job_id}"):
            r = client.sh(cmd)
            assert r.rc != 0, (cmd, r.out)
        # Another's jobs are not the lab user's to see (PrivateData): this cancels none of them, said or not.
        client.sh(f"scancel -u {f.other_user}")
        assert sum(t["State"] == "RUNNING" for t in busy.running(client)) == load.cpus
        # A second load is refused while one is queued.
        again = subprocess.run([sys.executable, "-m", "minihpc", "busy", "start"], cwd=ROOT, capture_output=True,
                               text=True, check=False, stdin=subprocess.DEVNULL, timeout=120)
        assert again.returncode == 1, again
        assert f"a background load of {f.other_user}'s is already queued" in again.stderr, again
    finally:
        stopped = busy.stop(client)
    assert stopped > 0
    assert busy.running(client) == []


def test_a_load_that_leaves_no_cpu_for_itself_is_refused(client: Client) -> None:
    capacity = client.facts.total_cpus
    r = subprocess.run([sys.executable, "-m", "minihpc", "busy", "start", "--leave", str(capacity)], cwd=ROOT,
                       capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 2, r
    assert r.stderr.strip().splitlines()[-1] == (
        f"minihpc: error: --leave {capacity} leaves the load no CPU of the cluster's {capacity}; "
        f"give 0 to {capacity - 1} (CPUs left for everyone else)")
    assert busy.running(client) == []
