"""Restarts lose nothing a node needs and nothing a user made: a restarted
node is indistinguishable from a fresh one (scratch, the shared mount, munge,
homes), a node whose scratch goes wrong is drained until it is right, and the
cluster's data outlives down/up and a restart of the Docker engine (a host
reboot), after which the staging lab passes."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import Cluster, assert_kept, assert_passed, eventually, keep, run_ok

from minihpc import ROOT
from minihpc.course.confirm import RUNS
from minihpc.course.labctl import Labs
from minihpc.faults import Faults
from scratch import policy

# Alone: it restarts nodes, the Docker engine and the whole cluster, and drains a node. Engine: first.
pytestmark = [pytest.mark.alone, pytest.mark.engine]

STAGED = """\
rule all:
    input: "results/staged.txt"

rule staged:
    input: "data/in.txt"
    output: "results/staged.txt"
    resources: slurm_extra="--nodelist={node}"
    shell: "echo {{input}} > {{output}}; hostname >> {{output}}; cat {{input}} >> {{output}}"
"""


def assert_fresh(cluster: Cluster, node: str) -> None:
    """What a node's first start set up, as the topology declares it."""
    host, user = cluster.host(node), cluster.lab_user
    assert run_ok(host, f"stat -c '%a %U %G' {policy.MOUNT}").split() == [policy.MODE, "root", "root"]
    assert int(run_ok(host, f"df -m --output=size {policy.MOUNT} | tail -n 1")) == cluster.facts.scratch_mb
    # Empty but for each user's own directory, which root makes (cluster/scratchdir.py), and
    # the empty directories the Prolog made for jobs since.
    users = sorted({user, cluster.facts.other_user})
    top = run_ok(host, f"find {policy.MOUNT} -mindepth 1 -maxdepth 1 -printf '%P %u %m %y\\n'").splitlines()
    assert sorted(top) == [f"{u} {u} 700 d" for u in users], f"{node}: {top}"
    below = run_ok(host, f"find {policy.MOUNT} -mindepth 2 -printf '%d %y %P\\n'").splitlines()
    left = [x for x in below if not (x.startswith("2 d ") and x.rsplit("/", 1)[-1].startswith("job-")
                                      and not any(y.split(" ", 2)[2].startswith(x.split(" ", 2)[2] + "/")
                                                  for y in below))]
    assert left == [], f"{node}: scratch must come back empty"
    assert host.run(f"mountpoint -q {cluster.facts.shared} && stat -t {cluster.facts.shared}/.").rc == 0
    assert host.run("munge -n | unmunge").rc == 0, f"{node}: munge"
    assert run_ok(host, f"stat -c '%U %a' /home/{user}").split() == [user, "700"]
    role = "login" if node == cluster.facts.login else "slurmd"
    assert host.run(f"minihpc-healthcheck {role}").rc == 0


def test_a_restarted_node_is_a_fresh_one_and_runs_a_staged_job(cluster: Cluster, minihpc, tmp_path: Path) -> None:
    node, login = cluster.compute_names[-1], cluster.facts.login
    faults = Faults(cluster.client)
    for name in (node, login):  # leftovers a restart must not keep
        run_ok(cluster.as_user(name), f"mkdir -p {policy.MOUNT}/{cluster.lab_user}/old && touch "
                                      f"{policy.MOUNT}/{cluster.lab_user}/old/f")
    # Both at once (each waits for its own container's health): a restart takes about 20 s.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda name: faults.apply("restart", name), (node, login)))
    for name in (node, login):
        assert_fresh(cluster, name)
    wf = tmp_path / "wf"
    (wf / "data").mkdir(parents=True)
    (wf / "data/in.txt").write_text("staged through scratch\n")
    (wf / "Snakefile").write_text(STAGED.format(node=node))
    report = minihpc.run(wf, profile=str(ROOT / "profiles/slurm-staging"), name="test-restarted-staging",
                         report=tmp_path / "report", fetch=["results/*.txt"])
    assert report.exit_code == 0, report
    [job] = report.jobs
    assert (job.rule, job.node, job.state) == ("staged", node, "COMPLETED")
    staged_from, ran_on, content = (wf / "results/staged.txt").read_text().splitlines()
    assert staged_from.startswith(policy.job_prefix(cluster.lab_user, job.job_id) + "/"), staged_from
    assert (ran_on, content) == (node, "staged through scratch")


def test_a_node_whose_scratch_goes_wrong_is_drained_until_it_is_right(cluster: Cluster) -> None:
    node = cluster.compute_names[0]
    host, login = cluster.host(node), cluster.host("login")

    def state() -> str:
        return run_ok(login, f"sinfo -h -n {node} -o '%t|%E' | head -n 1").strip()

    run_ok(host, f"chmod 1777 {policy.MOUNT}")
    try:
        # slurmd's HealthCheckProgram runs every 15 s.
        drained = eventually(lambda: state().startswith("drain") and state(), timeout=60, what=f"{node} drained")
        assert drained.split("|")[1] == f"nodecheck: scratch {policy.MOUNT} has mode 1777, not {policy.MODE}"
        r = host.run("minihpc-healthcheck slurmd")
        assert r.rc != 0 and "has mode 1777" in r.stdout, r
    finally:
        run_ok(host, f"chmod {policy.MODE} {policy.MOUNT}")
    # The same check, run now rather than at slurmd's next interval: it lifts its own drain.
    run_ok(host, "minihpc-nodecheck")
    eventually(lambda: state() == "idle|none", timeout=60, what=f"{node} resumed once scratch is right")
    # An administrator's drain is not the node check's: neither its reason
    # replaced while scratch is wrong, nor the drain lifted once it is right.
    Faults(cluster.client).apply("drain", node, reason="maintenance")
    try:
        run_ok(host, f"chmod 1777 {policy.MOUNT} && minihpc-nodecheck")
        assert state() == "drain|maintenance"
        run_ok(host, f"chmod {policy.MODE} {policy.MOUNT} && minihpc-nodecheck")
        assert state() == "drain|maintenance"
    finally:
        run_ok(host, f"chmod {policy.MODE} {policy.MOUNT}")
        Faults(cluster.client).apply("resume", node)


@pytest.fixture(scope="module")
def rebooted(cluster: Cluster) -> dict[str, str]:
    """Data on /shared and a finished job, then the Docker engine restarted."""
    kept = keep(cluster, "reboot")
    Faults(cluster.client).apply("reboot")
    return kept


def test_an_engine_restart_keeps_shared_files_accounting_and_job_ids(cluster: Cluster, rebooted) -> None:
    assert_kept(cluster, rebooted)
    for node in [*cluster.compute_names, cluster.facts.login]:
        assert_fresh(cluster, node)


def test_down_then_up_keeps_shared_files_accounting_and_job_ids(cluster: Cluster) -> None:
    kept = keep(cluster, "down-up")
    for verb in ("down", "up"):
        r = subprocess.run([sys.executable, "-m", "minihpc", verb], cwd=ROOT, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=600, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
    assert_kept(cluster, kept)


def test_after_an_engine_restart_the_staging_lab_passes(rebooted, labs: Labs) -> None:
    assert_passed(RUNS["core3-staging"](labs, prefix="test-core3-staging"))


def test_a_user_cannot_break_scratch_or_drive_the_node_check(cluster: Cluster) -> None:
    """As the lab user: scratch's mode is not theirs to change, their files in
    it do not make it wrong, and running the node check themselves drains
    nothing."""
    node = cluster.compute_names[0]
    user, login = cluster.as_user(node), cluster.host("login")
    assert user.run(f"chmod 1777 {policy.MOUNT}").rc != 0
    run_ok(user, f"mkdir -p {policy.MOUNT}/{cluster.lab_user}/x && head -c 1000000 /dev/zero "
                 f"> {policy.MOUNT}/{cluster.lab_user}/x/f")
    try:
        assert user.run("minihpc-healthcheck scratch").rc == 0, "a user's files leave scratch as declared"
        r = user.run(f"minihpc-nodecheck; scontrol update nodename={node} state=drain reason=mine")
        assert "Invalid user" in r.stderr or "Access/permission denied" in r.stderr, r
        assert run_ok(login, f"sinfo -h -n {node} -o %t").split()[0] == "idle"
    finally:
        run_ok(user, f"rm -rf {policy.MOUNT}/{cluster.lab_user}/x")
