"""`minihpc run` on a workflow that is not the course lab (tests/workflows/byow,
with its own profile): wildcards, a rule group, a checkpoint, local rules and a
failing rule under --keep-going. The report is checked against sacct."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Cluster, cli

from minihpc.cluster import Cluster as Client

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "tests/workflows/byow"



@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[tuple]:
    wf = tmp_path_factory.mktemp("byow") / "byow"
    shutil.copytree(WORKFLOW, wf)
    (wf / ".snakemake").mkdir()
    (wf / ".snakemake/stale").write_text("never synced")
    r = cli("run", str(wf), "--name", "test-byow", "--fresh", "--fetch", "results/grouped/*.txt",
            "--", "--keep-going")
    yield wf, r
    cluster.client.sh("rm -rf /shared/test-byow")


@pytest.mark.smoke
@pytest.mark.stack
@pytest.mark.cost(110)  # with the module's run
def test_the_exit_code_is_snakemakes(run) -> None:
    wf, r = run
    assert r.returncode == 1, f"--keep-going with one failing rule: Snakemake exits 1\n{r.stdout[-3000:]}{r.stderr}"
    assert "failing on purpose" in r.stdout, "Snakemake's output is streamed"
    assert (wf / ".minihpc/report.md").is_file()


@pytest.mark.smoke
@pytest.mark.stack
def test_the_report_matches_sacct_and_jobs_ran_on_compute_nodes(run, client: Client) -> None:
    wf, _ = run
    report = json.loads((wf / ".minihpc/report.json").read_text())
    assert report["run_id"], report
    assert report["profile"] == "profiles/slurm" and report["profile_source"] == "the workflow's own"
    rows = [j for j in client.sacct("now-1hours", ("JobID", "JobName", "NodeList", "State"))
            if j["JobName"] == report["run_id"]]
    assert sorted((j["JobID"], j["NodeList"], j["State"]) for j in rows) == \
        sorted((j["job_id"], j["node"], j["state"]) for j in report["jobs"])
    assert all(j["node"] in client.facts.nodes for j in report["jobs"]), report["jobs"]
    rules = sorted((j["rule"], j["wildcards"]) for j in report["jobs"])
    assert [w for r, w in rules if r == "make"] == ["a", "b", "c"], rules
    assert [r for r, _ in rules].count("pair_step1_step2") == 3, f"one group job per sample: {rules}"
    assert ("split", "") in rules, "the checkpoint ran as a SLURM job"
    states = {j["rule"]: j["state"] for j in report["jobs"]}
    assert states["fail"] == "FAILED" and states["split"] == "COMPLETED"
    assert report["nonlocal_rules_on_login"] == [], "every non-local rule went to SLURM"
    assert len(report["kept_logs"]) == len(report["jobs"]), "the profile keeps every job's log"


def test_the_report_embeds_the_runs_timeline(run) -> None:
    wf, _ = run
    report = json.loads((wf / ".minihpc/report.json").read_text())
    assert report["timeline"] == "timeline.svg", report["timeline"]
    assert "![the run's jobs over time](timeline.svg)" in (wf / ".minihpc/report.md").read_text()
    assert (wf / ".minihpc/timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (wf / ".minihpc/timeline.svg").read_text()
    assert f"run {report['run_id']} ({len(report['jobs'])} jobs" in svg
    # A legend entry per rule that went to SLURM, and the failed job marked as such.
    for rule in {j["rule"] for j in report["jobs"]}:
        assert f">{rule}<" in svg, rule
    assert "ended not COMPLETED" in svg
    assert "seconds since the first submission" in svg and "node and CPU slot" in svg


def test_a_profile_that_sends_nothing_to_slurm_is_caught(tmp_path: Path, client: Client) -> None:
    """The check can fail: minihpc's local profile runs every job on the login node."""
    wf = tmp_path / "byow"
    shutil.copytree(WORKFLOW, wf)
    try:
        r = cli("run", str(wf), "--name", "test-byow-local", "--fresh", "--profile",
                str(ROOT / "profiles/local"), "--", "--keep-going")
    finally:
        client.sh("rm -rf /shared/test-byow-local")
    assert r.returncode == 1, r.stderr
    report = json.loads((wf / ".minihpc/report.json").read_text())
    assert report["run_id"] is None and report["jobs"] == []
    assert report["nonlocal_rules_on_login"] == ["fail", "make", "split", "step1", "step2"], report
    assert "(the profile did not send them to SLURM)" in (wf / ".minihpc/report.md").read_text()


@pytest.mark.smoke
@pytest.mark.stack
def test_outputs_come_back_and_the_workflow_lands_owned_by_the_lab_user(run, client: Client) -> None:
    wf, _ = run
    report = json.loads((wf / ".minihpc/report.json").read_text())
    assert report["fetched"] == [f"results/grouped/{s}.txt" for s in "abc"] and report["fetch_refused"] == []
    assert (wf / "results/grouped/a.txt").read_text().startswith("a\n")
    r = client.sh("stat -c '%U' /shared/test-byow/Snakefile /shared/test-byow/results/summary.txt; "
                  "test -e /shared/test-byow/.snakemake/stale && echo synced-state")
    assert r.out.split() == [client.facts.lab_user] * 2, r.out


def _shared_listing(client: Client) -> str:
    return client.root("ls -la --time-style=full-iso /shared").out


# Alone, as the next: "nothing changed" is judged on /shared's listing, where other tests write.
@pytest.mark.alone
@pytest.mark.parametrize(("args", "message"), [
    (["run", "/nonexistent"], "/nonexistent is not a directory"),
    (["run", str(ROOT / "tests")], "no Snakefile in"),
    (["run", str(WORKFLOW), "--profile", "no/such/profile"], "no Snakemake profile at no/such/profile"),
    (["run", str(WORKFLOW), "--fetch", "../../etc/*"], "--fetch '../../etc/*' reaches outside the workflow"),
    (["run", str(WORKFLOW), "--name", "../x"], "--name '../x' is not a plain directory name"),
])
def test_bad_input_changes_nothing_on_shared(client: Client, args: list[str], message: str) -> None:
    before = _shared_listing(client)
    r = cli(*args)
    assert r.returncode == 2 and f"minihpc: error: {message}" in r.stderr, (r.returncode, r.stderr)
    assert _shared_listing(client) == before


@pytest.mark.alone
def test_no_cluster_is_a_clear_error(tmp_path: Path, client: Client) -> None:
    """A checkout with no cluster brought up (no .run/cluster.json)."""
    for pkg in ("minihpc", "nfs", "scratch"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = _shared_listing(client)
    r = cli("run", str(WORKFLOW), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert f"minihpc: error: no cluster facts at {tmp_path}/.run/cluster.json; bring a cluster up first" in r.stderr
    assert _shared_listing(client) == before


@pytest.mark.cost(80)
def test_the_pytest_fixture_runs_a_workflow(minihpc, tmp_path: Path) -> None:
    """What another project's test does with `pytest_plugins = ["minihpc.pytest_plugin"]`."""
    wf = tmp_path / "byow"
    shutil.copytree(WORKFLOW, wf)
    try:
        report = minihpc.run(wf, name="test-byow-fixture", report=tmp_path / "report",
                             snakemake_args=["results/grouped/a.txt"])
    finally:
        minihpc.sh("rm -rf /shared/test-byow-fixture")
    assert report.exit_code == 0
    assert sorted(j.rule for j in report.jobs) == ["make", "pair_step1_step2"]
    assert all(j.state == "COMPLETED" and j.node in minihpc.facts.nodes for j in report.jobs), report.jobs
    assert (tmp_path / "report/report.json").is_file()


@pytest.mark.cost(45)
def test_a_snakefile_and_configfile_named_among_snakemakes_arguments_are_honoured(tmp_path: Path,
                                                                                  client: Client) -> None:
    """A lesson's workflow whose Snakefile is `.Snakefile`, its config in a
    file given with --configfile, run in a working directory of its own (-d):
    as Snakemake takes them, through SLURM."""
    wf = tmp_path / "lesson"
    (wf / "config").mkdir(parents=True)
    (wf / ".Snakefile").write_text(
        "rule all:\n    input: 'out/greeting.txt'\n\n"
        "rule greet:\n    output: 'out/greeting.txt'\n"
        "    shell: \"echo {config[greeting]} $SLURM_JOB_ID > {output}\"\n")
    (wf / "config/lesson.yaml").write_text("greeting: hello-from-configfile\n")
    try:
        r = cli("run", str(wf), "--name", "test-dot-snakefile", "--fresh", "--",
                "--snakefile", ".Snakefile", "--configfile", "config/lesson.yaml", "-d", "work")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr
        report = json.loads((wf / ".minihpc/report.json").read_text())
        assert [(j["rule"], j["state"]) for j in report["jobs"]] == [("greet", "COMPLETED")], report["jobs"]
        out = client.sh("cat /shared/test-dot-snakefile/work/out/greeting.txt").out.split()
        assert out == ["hello-from-configfile", report["jobs"][0]["job_id"]], out
    finally:
        client.sh("rm -rf /shared/test-dot-snakefile")
