"""Shared fixtures: the live cluster, described by the facts `minihpc up` wrote
(.run/cluster.json), reached only through minihpc's cluster client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # the minihpc and nfs packages, as `python3 -m minihpc` has them

from support import Cluster  # noqa: E402

from minihpc.cluster import Cluster as Client  # noqa: E402

if TYPE_CHECKING:  # imported by pytest itself, as a plugin (so its asserts are rewritten)
    from minihpc.pytest_plugin import Minihpc


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the live cluster (make cluster-up)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


# The fixture other projects use to test their workflows; the cluster tests use it too.
pytest_plugins = ["minihpc.pytest_plugin"]


@pytest.fixture(scope="session")
def cluster(minihpc: Minihpc) -> Cluster:
    return Cluster(ROOT, client=minihpc.cluster)


@pytest.fixture(scope="session")
def client(cluster: Cluster) -> Client:
    """minihpc's cluster client, the way the lab and the CLI reach the cluster."""
    return cluster.client
