"""Shared fixtures: the live cluster, described by the facts `minihpc up` wrote
(.run/cluster.json), reached through minihpc's cluster client and, for
inspecting nodes, pytest-testinfra's docker backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # the minihpc and nfs packages, as `python3 -m minihpc` has them

from support import Cluster  # noqa: E402

from minihpc.cluster import Cluster as Client  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the live cluster (make cluster-up)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    r = subprocess.run([str(ROOT / "cluster/compose.sh"), "ps", "-q", "--status", "running", "slurmctld"],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0 or not r.stdout.strip():
        pytest.fail("the cluster is not running: run `make cluster-up` first (make test does it for you)")
    return Cluster(ROOT, client=Client.local())


@pytest.fixture(scope="session")
def client(cluster: Cluster) -> Client:
    """minihpc's cluster client, the way the lab and the CLI reach the cluster."""
    return cluster.client
