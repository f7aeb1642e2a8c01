"""`minihpc prove` on tests/workflows/prove: a workflow that keeps its
meaning through a profile without retries or kept logs fails on the audit
alone, and passes through the profile the audit suggests, its timestamp
recognised as nondeterministic (and judged by a command of the workflow's,
--compare) and its logs compared by existence; the same
workflow writing the host it ran on fails on that file and names its rule,
even when its SLURM job copies its output over the reference runs' own
afterwards. Each proof is three runs (two local side by side, then one
through SLURM): about a minute. One goes through the pytest fixture's
`prove()`, the others through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from minihpc import ROOT
from minihpc.cluster import Cluster as Client
from minihpc.pytest_plugin import Minihpc

WORKFLOW = ROOT / "tests/workflows/prove"


def prove(wf: Path, name: str, *options: str, snakemake: Sequence[str] = ()) -> tuple[
        subprocess.CompletedProcess[str], dict]:
    """`minihpc prove wf --name name OPTIONS -- SNAKEMAKE`."""
    r = subprocess.run([sys.executable, "-m", "minihpc", "prove", str(wf), "--name", name, *options, "--",
                        *snakemake],
                       cwd=ROOT, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=900)
    report = wf / ".minihpc/prove/report.json"
    assert report.is_file(), r.stdout[-3000:] + r.stderr
    return r, json.loads(report.read_text())


def cleanup(client: Client, name: str) -> None:
    client.sh(f"rm -rf {client.facts.shared}/{name}.prove-*")


@pytest.mark.cost(65)
def test_an_output_that_depends_on_where_it_ran_fails_and_a_job_cannot_rewrite_the_reference(
        tmp_path: Path, client: Client) -> None:
    wf = tmp_path / "prove"
    shutil.copytree(WORKFLOW, wf)
    name = "test-prove-where"
    try:
        r, proof = prove(wf, name, snakemake=["--config", "where=1", "cheat=1"])
        copied = client.sh(f"cat {client.facts.shared}/{name}.prove-reference-1/results/where.txt "
                           f"{client.facts.shared}/{name}.prove-policy/results/where.txt").out.split()
    finally:
        cleanup(client, name)
    assert r.returncode == 1 and proof["verdict"] == "fail", r.stdout[-3000:] + r.stderr
    assert copied[0] == copied[1] and copied[0] in client.facts.nodes, f"the job's copy landed: {copied}"
    bad = [(f["path"], f["rule"], f["verdict"]) for f in proof["findings"] if f["verdict"] in ("differs", "missing")]
    assert bad == [("results/where.txt", "where", "differs")], proof["findings"]
    assert "minihpc prove: FAIL: 1 file(s) differ under the policy: results/where.txt (where): differs" in r.stderr
    md = (wf / ".minihpc/prove/report.md").read_text()
    assert md.startswith("# minihpc prove: prove\n\n**FAIL**") and "| `results/where.txt` | where | differs |" in md
    # `where` is a quick rule sent to SLURM (hostname: about 5 s, Snakemake's start in the job): a
    # finding too, unless a loaded machine made its job as long as SLURM's overhead (10 s).
    where = next(j for j in json.loads((wf / ".minihpc/prove/policy/report.json").read_text())["jobs"]
                 if j["rule"] == "where")
    tiny = [(c["rule"], c["verdict"]) for c in proof["audit"] if c["area"] == "tiny rules"]
    assert tiny == ([("where", "finding")] if where["elapsed_s"] < 10 else []), (where, tiny)


@pytest.mark.cost(155)
def test_a_profile_without_retries_or_kept_logs_is_found_and_with_its_suggestion_the_workflow_passes(
        tmp_path: Path, client: Client, minihpc: Minihpc) -> None:
    """A workflow that keeps its meaning, through a profile as many are
    written: the meaning holds and the audit finds what the profile lacks;
    the suggested profile, used as it is written, then passes everything.
    The first proof goes through the pytest fixture, the second through the CLI."""
    wf = tmp_path / "prove"
    shutil.copytree(WORKFLOW, wf)
    name = "test-prove-good"
    try:
        verdict = minihpc.prove(wf, profile=str(ROOT / "tests/workflows/prove-bare-profile"), name=name).verdict
        proof = json.loads((wf / ".minihpc/prove/report.json").read_text())
        assert verdict == proof["verdict"] == "fail", proof["summary"]
        assert [f for f in proof["findings"] if f["verdict"] in ("differs", "missing")] == [], proof["findings"]
        found = {c["area"]: c["fix"] for c in proof["audit"] if c["verdict"] == "finding"}
        assert set(found) == {"retries", "logs"}, proof["audit"]
        assert "retries: 2" in found["retries"] and "slurm-keep-successful-logs: true" in found["logs"]
        assert "+retries: 2" in proof["suggested_diff"] and "+slurm-keep-successful-logs: true" in \
            proof["suggested_diff"], proof["suggested_diff"]
        # The timestamp compared by a command of the workflow's (both hold one), not by its size.
        r, proof = prove(wf, name, "--profile", ".minihpc/prove/suggested-profile", "--compare",
                         "python3 scripts/same_stamp.py")
    finally:
        cleanup(client, name)
    assert r.returncode == 0 and proof["verdict"] == "pass", r.stdout[-3000:] + r.stderr
    found = {f["path"]: (f["rule"], f["verdict"]) for f in proof["findings"]}
    assert {p: v for p, v in found.items() if p.startswith("results/")} == {
        **{f"results/parts/{i}.txt": ("part", "same") for i in range(4)},
        "results/sum.txt": ("total", "same"), "results/stamp.txt": ("stamp", "nondeterministic")}, found
    assert {p: v for p, v in found.items() if p.startswith("logs/part_")} == {
        f"logs/part_{i}.log": ("part", "log") for i in range(4)}, "a log says where it ran: compared by existence"
    assert "minihpc prove: PASS: the workflow keeps its meaning under the policy: 5 file(s) identical, " \
           "1 nondeterministic (compared by --compare); the profile fits what the run showed" in r.stderr
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
