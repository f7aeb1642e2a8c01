"""Shared fixtures: the live cluster, described by the facts `minihpc up` wrote
(.run/cluster.json), reached only through minihpc's cluster client."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import pytest
from support import Cluster

from minihpc import ROOT
from minihpc.cluster import Cluster as Client

if TYPE_CHECKING:  # imported by pytest itself, as a plugin (so its asserts are rewritten)
    from minihpc.pytest_plugin import Minihpc


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the live cluster (make cluster-up)")
    config.addinivalue_line("markers", "alone: changes or needs the whole cluster; run with no other test beside it")
    config.addinivalue_line("markers", "cost(seconds): about how long the test takes on the cluster (default "
                                       f"{DEFAULT_COST} s); side by side, the costliest groups start first")


# Side by side (tests/run-suite.sh: xdist -n N --dist loadscope), tests go to
# the workers by group: a file's tests run in one worker, in order, as their
# module fixtures expect, unless the test has a group of its own below (a
# long test, or one whose module fixture only it uses). The groups start
# costliest first (`cost` marks: a group costs its tests' sum), so that the
# longest do not start last.
# (xdist's own xdist_group marks do nothing under pytest 9.2: the id suffix
# it groups by is no longer set, so the scheduler here reads this table.)
DEFAULT_COST = 5
OWN_GROUP = {
    "tests/cluster/test_lab.py::test_resources_side_by_side": "lab-side-by-side",  # its module fixture
    "tests/cluster/test_lab.py::test_commissioning_sequence_as_printed": "lab-commissioning",
    # The file's other tests tell the check's jobs from theirs by working directory.
    "tests/cluster/test_sitecheck.py::test_the_site_check_passes_over_ssh_alone": "site-check",
}


def group_of(nodeid: str) -> str:
    return OWN_GROUP.get(nodeid.split("[")[0], nodeid.split("::")[0])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN201 - xdist's types
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 - only with xdist

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ByGroup(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    cost: dict[str, float] = {}
    for item in items:
        mark = item.get_closest_marker("cost")
        cost[group_of(item.nodeid)] = cost.get(group_of(item.nodeid), 0) + (mark.args[0] if mark else DEFAULT_COST)
    rank = {g: i for i, g in enumerate(start_order(cost, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))}
    items.sort(key=lambda item: rank[group_of(item.nodeid)])  # stable: a group's order is kept


def start_order(cost: dict[str, float], workers: int) -> list[str]:
    """The order xdist hands the groups out in. It gives each worker two at
    the start (a worker runs a test only once it knows the next), so the
    `workers` costliest go first, then the cheapest as their followers, then
    the rest costliest first, each to whichever worker frees up first."""
    ranked = sorted(cost, key=lambda g: -cost[g])
    head, tail = ranked[:workers], ranked[workers:]
    followers = tail[::-1][:workers]
    return head + followers + [g for g in tail if g not in followers]


# The fixture other projects use to test their workflows; the cluster tests use it too.
pytest_plugins = ["minihpc.pytest_plugin"]


@pytest.fixture(scope="session")
def cluster(minihpc: Minihpc) -> Cluster:
    return Cluster(ROOT, client=minihpc.cluster)


@pytest.fixture(scope="session")
def client(cluster: Cluster) -> Client:
    """minihpc's cluster client, the way the lab and the CLI reach the cluster."""
    return cluster.client


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
