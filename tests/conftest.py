"""Shared fixtures: the live cluster, described by the facts `minihpc up` wrote
(.run/cluster.json), reached only through minihpc's cluster client."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import pytest
from scheduling import DEFAULT_COST, MADE_GROUPS, group_of, start_order
from support import Cluster

from minihpc import ROOT
from minihpc.cluster import Cluster as Client
from minihpc.course.labctl import Labs

if TYPE_CHECKING:  # imported by pytest itself, as a plugin (so its asserts are rewritten)
    from minihpc.pytest_plugin import Minihpc


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the live cluster (make cluster-up)")
    config.addinivalue_line("markers", "alone: changes or needs the whole cluster; run with no other test beside it")
    config.addinivalue_line("markers", "engine: restarts the Docker engine; run first in the alone phase, before "
                                       "anything else uses the engine beside it (tests/run-suite.sh)")
    config.addinivalue_line("markers", "quiet: judges SLURM's timers or recreates containers; in the alone phase, "
                                       "run after the engine tests and before BESIDE starts (tests/run-suite.sh)")
    config.addinivalue_line("markers", "smoke: a capability proven on every Slurm release (make smoke SLURM=...), "
                                       "not only the default")
    config.addinivalue_line("markers", "stack: what a Snakemake stack changes, proven on every pinned set (make smoke "
                                       "SNAKEMAKE=...), not only the default")
    config.addinivalue_line("markers", "smoke_only: run by make smoke only (either kind); make test proves the same "
                                       "on the default elsewhere, in a stronger form (the marker's comment says where)")
    config.addinivalue_line("markers", "cost(seconds): about how long the test takes on the cluster (default "
                                       f"{DEFAULT_COST} s); side by side, the costliest groups start first")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN201 - xdist's types
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only with xdist

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

        def _reschedule(self, node) -> None:  # noqa: ANN001 - xdist's WorkerController
            """A group goes to a process only once that process holds just its
            last test (which it runs once it knows the next, or is told to
            stop): xdist's own rule (two or fewer left) queued the next group
            behind a group's two long tests while other processes were free."""
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) > 1:
                return
            self._assign_work_unit(node)

    return ByGroup(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


# After -m has deselected: the order is of the groups that run, at their cost.
@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_in_group_order(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    cost: dict[str, float] = {}
    for item in items:
        mark = item.get_closest_marker("cost")
        cost[group_of(item.nodeid)] = cost.get(group_of(item.nodeid), 0) + (mark.args[0] if mark else DEFAULT_COST)
    rank = {g: i for i, g in enumerate(start_order(cost, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))}

    # A group made in tests/scheduling.py (its tests take turns, in any order) runs its longest first: a process
    # is handed its next group while it still holds two tests, and the next group waits less behind two short
    # ones than behind a long one. A file's own group keeps the file's order (stable sort).
    def key(item: pytest.Item) -> tuple[int, float]:
        g, mark = group_of(item.nodeid), item.get_closest_marker("cost")
        return rank[g], -(mark.args[0] if mark else DEFAULT_COST) if g in MADE_GROUPS else 0
    items.sort(key=key)


# The fixture other projects use to test their workflows; the cluster tests use it too.
pytest_plugins = ["minihpc.pytest_plugin"]


@pytest.fixture(scope="session")
def cluster(minihpc: Minihpc) -> Cluster:
    return Cluster(ROOT, client=minihpc.cluster)


@pytest.fixture(scope="session")
def client(cluster: Cluster) -> Client:
    """minihpc's cluster client, the way the lab and the CLI reach the cluster."""
    return cluster.client


@pytest.fixture(scope="session")
def labs(client: Client) -> Labs:
    """Where the course's cores and demos run: this cluster, their proofs in .proof/ (as `minihpc confirm`)."""
    return Labs(client)


# make test's timeline (bench/suite.py): when each test ran, its fixtures'
# set-up and teardown included, one JSON line per test in $MINIHPC_SUITE_LOG
# (set by tests/run-suite.sh). Where the test runs: an xdist worker, or the
# one process.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    start = time.time()
    yield
    path = os.environ.get("MINIHPC_SUITE_LOG")
    if path:
        line = {"test": item.nodeid, "start": start, "end": time.time(),
                "worker": os.environ.get("PYTEST_XDIST_WORKER", ""),
                "alone": item.get_closest_marker("alone") is not None}
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")
