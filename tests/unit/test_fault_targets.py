"""Fault commands refuse a missing or unknown target, with the fix, before
anything is touched (the cluster tests apply them for real)."""

from __future__ import annotations

import pytest

from minihpc.errors import BAD_INPUT, BadInput
from minihpc.facts import Facts
from minihpc.faults import FAULTS, check_target, targets

FACTS = Facts(nodes=["c1", "c2"], cpus=2, mem_mb=3000, scratch_mb=512)


def test_services_and_nodes_come_from_the_facts() -> None:
    assert targets(FACTS, "service") == ["db", "slurmdbd", "slurmctld", "restd", "login", "c1", "c2"]
    assert targets(FACTS, "node") == ["c1", "c2"]


def test_every_fault_that_needs_undoing_names_its_undo() -> None:
    for f in FAULTS.values():
        assert not f.undo or f.undo in FAULTS, f
    assert {f.name for f in FAULTS.values() if f.undo} == {"kill", "stop", "drain", "cut", "nfs-eio"}


@pytest.mark.parametrize(("fault", "target", "message"), [
    ("kill", None, "fault kill needs a service; name one of db, slurmdbd, slurmctld, restd, login, c1, c2, "
                   "e.g. minihpc fault kill c2"),
    ("kill", "c3", "'c3' is not a service of this cluster (it has db, slurmdbd, slurmctld, restd, login, c1, c2); "
                   "name one of them"),
    ("cut", "login", "'login' is not a node of this cluster (it has c1, c2)"),
    ("drain", "slurmctld", "'slurmctld' is not a node of this cluster"),
    ("nfs-eio", "/etc/passwd", "fault nfs-eio needs a path under /shared, got '/etc/passwd'"),
    ("nfs-eio", "/shared/../etc", "needs a path under /shared"),
    ("nfs-eio", None, "needs a path under /shared, got None"),
    ("reboot", "c1", "fault reboot takes no target, got 'c1'; run: minihpc fault reboot"),
])
def test_a_bad_target_is_refused_with_the_fix(fault: str, target: str | None, message: str) -> None:
    with pytest.raises(BadInput) as e:
        check_target(FACTS, FAULTS[fault], target)
    assert message in str(e.value)
    assert e.value.code == BAD_INPUT


@pytest.mark.parametrize(("fault", "target"), [("kill", "c1"), ("start", "db"), ("restart", "slurmdbd"),
                                               ("cut", "c2"), ("nfs-eio", "/shared/lab/results/*"),
                                               ("stop-snakemake", None), ("reboot", None)])
def test_a_good_target_passes(fault: str, target: str | None) -> None:
    check_target(FACTS, FAULTS[fault], target)
