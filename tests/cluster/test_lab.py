"""The course cores driven through the slurm profile, as the lab user.

Each core (and each instructor demo) runs the module's commands on the live cluster and judges them on
evidence from the system (sacct rows, files on /shared, exit codes, Snakemake's
messages); a test fails with every failed check and its evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from support import Cluster, assert_passed, eventually

from minihpc import busy
from minihpc.course.confirm import RUNS, commissioning
from minihpc.course.cores import interrupted_run
from minihpc.course.demos import DEMOS
from minihpc.course.labctl import Labs
from minihpc.course.underload import under_load
from minihpc.proofs import Proof

# Core 6 and the resource demos change nothing shared (no NFS profile, no
# scratch) and tell their jobs apart by working directory, so they run side by
# side, last: their TIMEOUTs and kills are waits, not work.
SIDE_BY_SIDE: dict[str, Callable[[Labs], Proof]] = {
    "core6": lambda labs: RUNS["core6"](labs, prefix="test-core6"),
    **{name: (lambda labs, name=name: DEMOS[name].run(labs, f"test-{name}")) for name in ("demo-oom", "demo-timeout",
                                                                                          "demo-partition")},
}


# Proven on a busy cluster, below; core3-staging runs after a restart of the
# Docker engine (test_durability.py), and under load with minihpc core 1 3-latency 3-staging --busy.
UNDER_LOAD = ("core1", "core3-latency")
# Proven over SSH by `minihpc site check` against this cluster (test_sitecheck.py):
# the same cores, run once. Core 2's interrupted run needs fault injection, so
# it is proven here.
OVER_SSH = ("core2", "core4", "core5")


def test_every_core_is_proven_somewhere() -> None:
    assert set(RUNS) == {*SIDE_BY_SIDE, *UNDER_LOAD, *OVER_SSH, "core3-staging"} - set(DEMOS), sorted(RUNS)


# make test proves Core 1 under the other user's load (alone, below) and in the commissioning sequence.
@pytest.mark.smoke_only
@pytest.mark.stack
@pytest.mark.smoke
@pytest.mark.cost(35)
def test_core1_as_a_learner_runs_it(labs: Labs) -> None:
    """Executor selection and log retention on a quiet cluster, as the module
    has a learner run them: on every Slurm release minihpc builds (make smoke)."""
    assert_passed(RUNS["core1"](labs, prefix="test-core1-plain"))


# It judges every node's scratch (no file of the user's left anywhere): in make smoke no other test stages
# through scratch, and the one that writes there takes turns with it (tests/scheduling.py). In make test
# the site check and the staging demos do: there it is proven alone, after an engine restart
# (test_durability.py).
@pytest.mark.stack
@pytest.mark.smoke_only
@pytest.mark.smoke
@pytest.mark.cost(55)
def test_core3_staging_as_a_learner_runs_it(labs: Labs) -> None:
    """Staging to node-local scratch, as the module has a learner run it, on
    the other Slurm releases (make smoke)."""
    assert_passed(RUNS["core3-staging"](labs, prefix="test-core3-staging-plain"))


# Side by side: it kills the processes of its own job only, and judges only its own job and directory.
@pytest.mark.cost(45)
def test_a_run_interrupted_with_its_node_leaves_its_output_incomplete(cluster: Cluster, labs: Labs) -> None:
    assert_passed(interrupted_run(labs, prefix="test-core2"))


# Alone: the load holds every CPU but one, and Core 3's latency lesson switches the NFS profile (its delay on
# its own directories; the profile's caching for everyone).
@pytest.mark.alone
def test_the_course_proofs_hold_under_another_users_load(cluster: Cluster, labs: Labs) -> None:
    """Executor selection, log retention and latency-wait proven while the
    other user's higher-priority load holds every CPU but one (the design's
    proofs on real scheduler pressure); the load's own checks say it was
    there."""
    checks: list = []

    # Side by side: each judges only its own labs' jobs (by working directory), and Core 3's delay is on its
    # own directories.
    def proofs() -> None:
        with ThreadPoolExecutor(len(UNDER_LOAD)) as pool:
            for proof in pool.map(lambda name: RUNS[name](labs, prefix=f"test-{name}-busy"), UNDER_LOAD):
                checks.extend(proof.checks)
    load = under_load(cluster.client, proofs)
    core = Proof("busy")
    core.checks = checks + load.checks
    assert_passed(core)
    # Cancelled, a running task is COMPLETING until its epilog is done.
    eventually(lambda: busy.running(cluster.client) == [], timeout=60, what="the load stopped afterwards")


# Alone: scratch-full fills every node's scratch. (The two that stage through
# the login node's one main prefix take turns with the site check's staged
# run instead: tests/scheduling.py.)
ALONE_DEMOS = ("demo-scratch-full",)
COST = {"demo-group-too-big": 65, "demo-unwritable-scratch": 25, "demo-prefix-mismatch": 55, "demo-mpi": 80}
# demo-latency is Core 3's first half, checked by the same code
# (cores.short_wait_fails): proven by Core 3 under load above.
IN_A_CORE = {"demo-latency": "core3-latency"}


DEMOS_HERE = [n for n in DEMOS if n not in SIDE_BY_SIDE and n not in IN_A_CORE]


def test_a_demo_proven_in_a_core_is_in_a_core_that_runs() -> None:
    assert set(IN_A_CORE) <= set(DEMOS) and set(IN_A_CORE.values()) <= set(UNDER_LOAD), IN_A_CORE


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.alone) if n in ALONE_DEMOS else
                                  pytest.param(n, marks=pytest.mark.cost(COST[n])) if n in COST else n
                                  for n in DEMOS_HERE])
def test_instructor_demo(cluster: Cluster, labs: Labs, name: str) -> None:
    """Each demo fails the way its docs say, leaves nothing poisoned, and cleans up."""
    assert_passed(DEMOS[name].run(labs, f"test-{name}"))


@pytest.mark.cost(195)
def test_commissioning_sequence_as_printed(cluster: Cluster, labs: Labs) -> None:
    """make lab: the module's six commands word for word (profiles/slurm), their
    expected failures proven (ERRATA 14, 15), then the fix passing."""
    assert_passed(commissioning(labs))


@pytest.fixture(scope="module")
def side_by_side(cluster: Cluster, labs: Labs) -> Iterator[dict[str, Future[Proof]]]:
    with ThreadPoolExecutor(len(SIDE_BY_SIDE)) as pool:
        yield {name: pool.submit(run, labs) for name, run in SIDE_BY_SIDE.items()}


@pytest.mark.cost(60)  # each; all four at once take as long as Core 6
@pytest.mark.parametrize("name", list(SIDE_BY_SIDE))
def test_resources_side_by_side(side_by_side: dict[str, Future[Proof]], name: str) -> None:
    """Core 6, demo-oom, demo-timeout and demo-partition, all at once."""
    assert_passed(side_by_side[name].result(timeout=1200))
