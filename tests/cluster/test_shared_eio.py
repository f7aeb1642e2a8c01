"""EIO injected on /shared, path by path: a job reading the file sees an I/O
error; a workflow's job writing its output there fails alone, nothing
downstream runs and nothing poisoned stays on /shared; `minihpc prove`'s EIO
and slow-nfs faults on a workflow's run, failed by a profile without retries
and with a short latency-wait, found by the audit, whose suggested profile
then passes.

Side by side with other tests: a fault rule names one path of this file's
own directories, and the lag (lag-10) is on the proof's own run directory
only (delay_path), so every test beside it sees the filesystem as `off`.
These tests set the one NFS profile, so they share this file (one group:
one after the other, never at once)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PROVE_WORKFLOW, Cluster, prove, remove_proof, run_ok, sbatch_waited

from minihpc import ROOT
from minihpc.cluster import Cluster as Client
from minihpc.faults import Faults
from minihpc.pytest_plugin import Minihpc

WORKFLOW = ROOT / "tests/workflows/faults"


@pytest.fixture
def proof_dir(cluster: Cluster, client: Client) -> Iterator[str]:
    where = f"{cluster.facts.shared}/nfs-eio-proof"
    user = cluster.as_user()
    run_ok(user, f"rm -rf {where} && mkdir -p {where}")
    yield where
    client.set_nfs_profile("off")  # the fault rules dropped, whatever the test did
    user.run(f"rm -rf {where}")


@pytest.mark.cost(10)
def test_an_injected_eio_reaches_the_job_as_an_io_error(cluster: Cluster, proof_dir: str, client: Client) -> None:
    user = cluster.as_user()
    run_ok(user, f"echo payload > {proof_dir}/input.txt")
    rel = cluster.facts.on_mount(proof_dir)
    client.set_nfs_profile("off", "--fault", f"EIO:op=read,path={rel}/input.txt,node=c1,probability=1")
    r = user.run(sbatch_waited(f"-w c1 -o {proof_dir}/job.out --wrap 'cat {proof_dir}/input.txt'"))
    out = run_ok(user, f"cat {proof_dir}/job.out")
    assert r.rc != 0 and "Input/output error" in out, out
    jobid = r.stdout.split()[-1]
    state = run_ok(user, f"sacct -n -X -P -j {jobid} -o State,ExitCode").strip()
    assert state.startswith("FAILED"), state
    assert run_ok(cluster.as_user("c2"), f"cat {proof_dir}/input.txt").strip() == "payload", "node c2 unaffected"


@pytest.mark.cost(105)
def test_eio_on_one_output_fails_that_job_and_poisons_nothing(cluster: Cluster, minihpc) -> None:
    faults, name = Faults(cluster.client), "test-faults-eio"
    where = f"{cluster.facts.shared}/{name}"
    args = ["--keep-going", "--config", "parts=4", "seconds=1"]
    faults.apply("nfs-eio", f"{where}/results/parts/2.txt")
    try:
        report = minihpc.run(WORKFLOW, name=name, snakemake_args=args)
    finally:
        faults.apply("nfs-clear")
    assert report.exit_code == 1
    states = {(j.rule, j.wildcards): j.state for j in report.jobs}
    assert states == {("part", "0"): "COMPLETED", ("part", "1"): "COMPLETED", ("part", "2"): "FAILED",
                      ("part", "3"): "COMPLETED"}, "the failed part fails alone and total never runs"
    files = run_ok(cluster.as_user("login"), f"cd {where} && find results -type f | sort").split()
    assert files == ["results/parts/0.txt", "results/parts/1.txt", "results/parts/3.txt"]
    again = minihpc.run(WORKFLOW, name=name, fresh=False, snakemake_args=args)
    assert again.exit_code == 0
    assert [(j.rule, j.wildcards) for j in again.jobs] == [("part", "2")], "the failed part again, alone"
    assert run_ok(cluster.as_user("login"), f"cat {where}/results/total.txt").strip() == "4 parts, sum 6"


def faults_of(proof: dict) -> dict[str, dict]:
    return {o["fault"]: o for o in proof["faults"]}


@pytest.mark.cost(250)
def test_prove_fails_the_eio_and_the_lag_finds_what_the_profile_lacks_and_its_suggestion_passes(
        tmp_path: Path, client: Client, minihpc: Minihpc) -> None:
    """`minihpc prove` (tests/workflows/prove), with its EIO and slow-nfs
    faults: a workflow that keeps its meaning, through a profile as many are
    written (no retries, successful logs deleted, a 3 s latency-wait). The
    meaning holds; the EIO on one output fails its job for good (no
    retries); the lag (10 s, on the run's own directory), measured beside the
    run, is longer than the profile waits, and the audit finds all three.
    (Whether Snakemake also declares a part's output missing under the lag
    depends on when the plugin's status check sees its job end: up to 25 s
    later here. When it does, the fault has failed, with the same fix.) The
    suggested profile, used as it is written, then passes. (A latency-wait
    above the lag surviving it, with every other fault: the Action's prove,
    make test-action, whose profile waits 30 s.) The first proof goes
    through the pytest fixture, the second through the CLI."""
    wf = tmp_path / "prove"
    shutil.copytree(PROVE_WORKFLOW, wf)
    name = "test-prove-good"
    try:
        verdict = minihpc.prove(wf, profile=str(ROOT / "tests/workflows/prove-bare-profile"), name=name,
                                faults="eio,slow-nfs", snakemake_args=["--keep-going"]).verdict
        proof = json.loads((wf / ".minihpc/prove/report.json").read_text())
        assert verdict == proof["verdict"] == "fail", proof["summary"]
        assert [f for f in proof["findings"] if f["verdict"] in ("differs", "missing under the policy")] == [], \
            proof["findings"]
        found = {c["area"]: c["fix"] for c in proof["audit"] if c["verdict"] == "finding"}
        assert set(found) == {"retries", "logs", "latency-wait"}, proof["audit"]
        faults = faults_of(proof)
        assert list(faults) == ["slow-nfs", "eio"], proof["faults"]
        # The EIO landed on the first write of results/parts/3.txt; its job failed, never to run again.
        eio = faults["eio"]
        assert eio["verdict"] == "failed" and eio["fix"].startswith("`retries: 2`"), eio
        assert "(part[3]) ended FAILED" in eio["why"] and "never run again (retries: 0)" in eio["why"], eio
        # The lag, measured beside the run in its own directory, is longer than the 3 s the profile waits.
        lag = faults["slow-nfs"]
        assert any(re.search(r"lag (9|1[0-4])\.\d+ s", e) for e in lag["evidence"]), lag["evidence"]
        wait = int(re.match(r"`latency-wait: (\d+)`", found["latency-wait"])[1])
        assert 20 <= wait <= 35, found["latency-wait"]
        if lag["verdict"] == "failed":
            assert lag["why"].startswith("Missing files after 3 seconds") and lag["fix"] == f"`latency-wait: {wait}`"
        else:
            assert lag["verdict"] == "survived", lag
        assert proof["runs"]["faults"]["exit_code"] != 0 and proof["undone"] == [], proof["runs"]
        assert proof["runs"]["faults"]["timeline"] == "faults/timeline.svg", proof["runs"]
        assert "eio (failed)" in proof["summary"], proof["summary"]
        assert "retries: 2" in found["retries"] and "slurm-keep-successful-logs: true" in found["logs"]
        for line in ("+retries: 2", "+slurm-keep-successful-logs: true", "-latency-wait: 3", f"+latency-wait: {wait}"):
            assert line in proof["suggested_diff"].splitlines(), proof["suggested_diff"]
        # The timestamp compared by a command of the workflow's (both hold one), not by its size.
        r, proof = prove(wf, name, "--profile", ".minihpc/prove/suggested-profile", "--compare",
                         "python3 scripts/same_stamp.py", "--faults", "none")
    finally:
        remove_proof(client, name)
    assert r.returncode == 0 and proof["verdict"] == "pass", r.stdout[-3000:] + r.stderr
    found = {f["path"]: (f["rule"], f["verdict"]) for f in proof["findings"]}
    assert {p: v for p, v in found.items() if p.startswith("results/")} == {
        **{f"results/parts/{i}.txt": ("part", "same") for i in range(4)},
        "results/sum.txt": ("total", "same"), "results/stamp.txt": ("stamp", "nondeterministic")}, found
    assert {p: v for p, v in found.items() if p.startswith("logs/part_")} == {
        f"logs/part_{i}.log": ("part", "log") for i in range(4)}, "a log says where it ran: compared by existence"
    assert "minihpc prove: PASS: the workflow keeps its meaning under the policy: 5 file(s) identical, " \
           "1 nondeterministic (compared by --compare); the profile fits what the run showed" in r.stderr
    assert proof["faults"] == [], proof["faults"]
    # The EIO's rule is gone, and the profile is as it was.
    assert client.root("minihpc-nfs show").out.splitlines()[0].startswith("profile: off "), "not restored"
    assert "fault:" not in client.root("minihpc-nfs show").out
    stamp = next(f["why"] for f in proof["findings"] if f["path"] == "results/stamp.txt")
    assert stamp == "its two reference runs differ: compared by --compare: python3 scripts/same_stamp.py exited 0", \
        stamp
    audit = {(c["area"], c["rule"]): c["verdict"] for c in proof["audit"]}
    assert audit[("memory", "part")] == audit[("runtime", "part")] == audit[("retries", "")] == "ok", audit
    assert "finding" not in audit.values() and proof["suggested_diff"] == "", audit
    # The references ran on the login node, the policy run's jobs on compute nodes.
    runs = {run: json.loads((wf / f".minihpc/prove/{run}/report.json").read_text()) for run in proof["runs"]}
    assert [runs[r]["run_id"] for r in ("reference-1", "reference-2")] == [None, None], "no SLURM job"
    assert {j["rule"] for j in runs["policy"]["jobs"]} == {"part"}, "the quick rules are local"
    # The policy run's picture, shown in the proof's report; the references sent nothing to SLURM.
    assert [proof["runs"][r]["timeline"] for r in ("reference-1", "reference-2", "policy")] == [
        "none: no job went to SLURM", "none: no job went to SLURM", "policy/timeline.svg"], proof["runs"]
    assert "![the policy run's jobs over time](policy/timeline.svg)" in (wf / ".minihpc/prove/report.md").read_text()
    assert (wf / ".minihpc/prove/policy/timeline.svg").stat().st_size > 1000
    assert all(j["node"] in client.facts.nodes and j["state"] == "COMPLETED" for j in runs["policy"]["jobs"])
