"""Changing NODES on a running cluster reconciles it, both ways, and keeps
what users made (files on /shared, accounting, job ids)."""

from __future__ import annotations

import os
import subprocess

import pytest
from support import Cluster, assert_kept, keep, run_ok

from minihpc.transport import containers

# Alone: it adds a node and takes it away again, recreating the cluster's services.
pytestmark = pytest.mark.alone


def _cluster_up(cluster: Cluster, nodes: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODES": str(nodes)}
    return subprocess.run(["make", "-C", str(cluster.root), "cluster-up"], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def _idle_nodes(cluster: Cluster) -> list[str]:
    out = run_ok(cluster.as_user(), "sinfo -h -N -o '%N %t'")
    # A node in several partitions has a row in each.
    return sorted({n for n, state in (line.split() for line in out.splitlines()) if state == "idle"})


def test_scale_up_to_three_and_back(cluster: Cluster) -> None:
    start = cluster.nodes
    kept = keep(cluster, "resize")
    try:
        r = _cluster_up(cluster, start + 1)
        assert r.returncode == 0, r.stdout + r.stderr
        bigger = [f"c{i}" for i in range(1, start + 2)]
        assert _idle_nodes(cluster) == sorted(bigger)
        srun = run_ok(cluster.as_user(), f"srun -N{start + 1} hostname")
        assert sorted(srun.split()) == sorted(bigger)
    finally:
        r = _cluster_up(cluster, start)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _idle_nodes(cluster) == sorted(cluster.compute_names)
    gone = containers.ps("{{.ID}}", f"label=com.docker.compose.service=c{start + 1}")
    assert gone.returncode == 0 and gone.stdout.strip() == "", gone.stderr
    assert_kept(cluster, kept)
