"""A pytest plugin: the running minihpc cluster as a fixture, to test your own
workflow against SLURM from pytest.

Load it with `pytest -p minihpc.pytest_plugin`, or in a conftest.py with
`pytest_plugins = ["minihpc.pytest_plugin"]`, then:

    def test_my_workflow(minihpc, tmp_path):
        report = minihpc.run("path/to/workflow", snakemake_args=["--keep-going"], report=tmp_path)
        assert report.exit_code == 0
        assert {j.node for j in report.jobs} <= set(minihpc.facts.nodes)

    def test_my_workflow_keeps_its_meaning(minihpc, tmp_path):
        proof = minihpc.prove("path/to/workflow", report=tmp_path)
        assert proof.verdict == "pass", proof.summary

A test that asks for the fixture with no cluster up fails with the fix
(`minihpc up`); it is never skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from minihpc.cluster import Cluster, Result
from minihpc.errors import MinihpcError
from minihpc.facts import Facts
from minihpc.prove import Proof, compare_command, prove
from minihpc.prove_faults import choose
from minihpc.runner import Report, execute, plan


class Minihpc:
    """What a test gets: the cluster client, its facts, `run()` and `prove()`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def facts(self) -> Facts:
        return self.cluster.facts

    def run(self, path: str | Path, profile: str | None = None, name: str | None = None,
            report: str | Path | None = None, fetch: Sequence[str] = (), exclude: Sequence[str] = (),
            fresh: bool = True, snakemake_args: Sequence[str] = (), requirements: Sequence[str] = (),
            pip: Sequence[str] = (), no_requirements: bool = False) -> Report:
        """`minihpc run` from Python: the same checks, environment, sync, run
        and report; Snakemake's output goes to the test's captured stdout."""
        p = plan(str(path), profile, name, str(report) if report else None, list(fetch), list(exclude), fresh,
                 list(snakemake_args), list(requirements), list(pip), no_requirements)
        return execute(p, self.cluster, out=sys.stdout)

    def prove(self, path: str | Path, profile: str | None = None, name: str | None = None,
              report: str | Path | None = None, exclude: Sequence[str] = (), snakemake_args: Sequence[str] = (),
              requirements: Sequence[str] = (), pip: Sequence[str] = (), no_requirements: bool = False,
              compare: str | None = None, faults: str | None = None) -> Proof:
        """`minihpc prove` from Python: the same runs, comparison, faults, audit
        and report (report/report.md, .json); its `verdict` is "pass" or "fail".
        `faults` as --faults takes it (None: every fault; "none": none)."""
        compare_with = compare_command(compare, path)
        chosen = choose(faults, self.cluster.facts, site=False)
        report = report or Path(path) / ".minihpc/prove"
        p = plan(str(path), profile, name, str(report), [], list(exclude), True, list(snakemake_args),
                 list(requirements), list(pip), no_requirements)
        return prove(p, self.cluster, out=sys.stdout, compare_with=compare_with, faults=chosen)

    def sh(self, script: str, node: str | None = None, user: str | None = None) -> Result:
        """A shell command on a node (the login node) as a user (the lab user)."""
        return self.cluster.sh(script, node=node, user=user)

    def sacct(self, since: str, fields: tuple[str, ...] = ("JobID", "JobName", "Comment", "NodeList", "State")
              ) -> list[dict[str, str]]:
        return self.cluster.sacct(since, fields)


@pytest.fixture(scope="session")
def minihpc() -> Minihpc:
    try:
        cluster = Cluster.local()
    except MinihpcError as e:
        pytest.fail(f"minihpc: {e}", pytrace=False)
    alive = cluster.sh("true", timeout=60)
    if alive.rc != 0:
        pytest.fail(f"minihpc: the cluster does not answer ({alive.out.strip()[:200]}); bring it up: minihpc up",
                    pytrace=False)
    return Minihpc(cluster)
