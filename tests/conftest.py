"""Shared fixtures: the live cluster, reached through cluster/compose.sh and
pytest-testinfra's docker backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # the nfs package
sys.path.insert(0, str(ROOT / "lab"))  # labctl, cores

from support import Cluster  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the live cluster (make cluster-up)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    c = Cluster(ROOT, nodes=int(os.environ.get("NODES", "2")))
    r = subprocess.run([str(ROOT / "cluster/compose.sh"), "ps", "-q", "--status", "running", "slurmctld"],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0 or not r.stdout.strip():
        pytest.fail("the cluster is not running: run `make cluster-up` first (make test does it for you)")
    return c
