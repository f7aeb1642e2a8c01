"""Changing NODES on a running cluster reconciles it, both ways, and keeps
what users made (files on /shared, accounting, job ids)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import Cluster, assert_kept, keep, run_ok

from minihpc import ROOT
from minihpc.transport import containers

# Alone: it adds a node and takes it away again, recreating the cluster's services.
# Quiet: its MPI rule (6 ranks on 3 nodes) failed once on a loaded host.
pytestmark = [pytest.mark.alone, pytest.mark.quiet]


def _cluster_up(cluster: Cluster, nodes: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODES": str(nodes)}
    return subprocess.run(["make", "-C", str(cluster.root), "cluster-up"], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def _idle_nodes(cluster: Cluster) -> list[str]:
    out = run_ok(cluster.as_user(), "sinfo -h -N -o '%N %t'")
    # A node in several partitions has a row in each.
    return sorted({n for n, state in (line.split() for line in out.splitlines()) if state == "idle"})


def test_scale_up_to_three_and_back(cluster: Cluster, tmp_path: Path) -> None:
    start = cluster.nodes
    kept = keep(cluster, "resize")
    try:
        r = _cluster_up(cluster, start + 1)
        assert r.returncode == 0, r.stdout + r.stderr
        bigger = [f"c{i}" for i in range(1, start + 2)]
        assert _idle_nodes(cluster) == sorted(bigger)
        srun = run_ok(cluster.as_user(), f"srun -N{start + 1} hostname")
        assert sorted(srun.split()) == sorted(bigger)
        mpi_on_every_cpu(cluster, tmp_path, bigger)
    finally:
        r = _cluster_up(cluster, start)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _idle_nodes(cluster) == sorted(cluster.compute_names)
    gone = containers.ps("{{.ID}}", f"label=com.docker.compose.service=c{start + 1}")
    assert gone.returncode == 0 and gone.stdout.strip() == "", gone.stderr
    assert_kept(cluster, kept)


def mpi_on_every_cpu(cluster: Cluster, tmp_path: Path, nodes: list[str]) -> None:
    """The site's modules on the new node too, and an MPI program with a rank
    on every CPU of every node: through srun, and as an `envmodules:` rule
    with `mpi` and `tasks` through the SLURM plugin (tests/workflows/modules)."""
    ranks = cluster.facts.cpus * len(nodes)
    out = run_ok(cluster.as_user(), f"module load mpi-demo 2>/dev/null && srun -A lab -p short -t 2 "
                                    f"--mem-per-cpu=200M -N{len(nodes)} -n{ranks} mpi-pi")
    result = json.loads(out)
    assert result["ranks"] == ranks and sorted(set(result["rank_nodes"])) == nodes, result
    assert all(result["rank_nodes"].count(n) == cluster.facts.cpus for n in nodes), result
    wf = tmp_path / "wf"
    shutil.copytree(ROOT / "tests/workflows/modules", wf)
    r = subprocess.run([sys.executable, "-m", "minihpc", "run", str(wf), "--name", "test-scaling-mpi", "--fresh",
                        "--profile", str(ROOT / "profiles/slurm"), "--fetch", "results/pi.json", "--",
                        "--sdm", "env-modules", "--config", f"tasks={ranks}", f"nodes={len(nodes)}"], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout
    result = json.loads((wf / "results/pi.json").read_text())
    assert result["ranks"] == ranks and sorted(set(result["rank_nodes"])) == nodes, result
    job = json.loads((wf / ".minihpc/report.json").read_text())["jobs"][0]["job_id"]
    rows = run_ok(cluster.as_user(), f"sacct -n -P -j {job} -o JobID,NTasks,NNodes,State")
    assert f"{job}.0|{ranks}|{len(nodes)}|COMPLETED" in rows.split(), rows
