"""`minihpc prove` on tests/workflows/prove.

- `--site`, against minihpc itself over SSH: the workflow writing the host it
  ran on fails on that file and names its rule, even when its SLURM job
  copies its output over the reference runs' own afterwards; and no fault is
  applied on a site. Three runs (two local side by side, then one through
  SLURM): about a minute.
- A profile that stages through the nodes' scratch, proven with its staging
  and without: a file that records its own path differs through staging
  only. Four runs: about a minute and a half.
- A profile asking too little memory for a rule at every retry: found, with
  a request that grows with the attempt, which then passes. Two proofs of
  that rule alone: about two and a half minutes.
- A group of jobs larger than any node: found, with SLURM's own refusal.
  About 40 s.

The staging and group proofs apply no fault and judge no job's length, so
the workflow's parts take 1 s there (`--config part_seconds=1`), not the
10 s a fault needs to land on one (the site proof's audit judges jobs
shorter than SLURM's overhead: its parts keep their 10 s).

(The audit's findings and the suggested profile, with the EIO fault:
test_shared_eio.py; every fault: `make test-action`, the Action's prove.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import PROVE_WORKFLOW, prove, remove_proof

from minihpc import ROOT
from minihpc.cluster import ROOT_USER
from minihpc.cluster import Cluster as Client
from minihpc.transport import containers


@pytest.mark.cost(110)
def test_over_ssh_an_output_that_depends_on_where_it_ran_fails_a_job_cannot_rewrite_the_reference_no_fault(
        tmp_path: Path, client: Client) -> None:
    """minihpc as a site (minihpc site local), the workflow writing the host
    it ran on, its SLURM job then copying that over the reference runs' own:
    `prove --site` reaches the site over SSH only (a `docker` on PATH that
    fails and logs stays unused), fails on that file naming its rule, audits
    the profile, and applies no fault: no container restarted, no fault rule
    of its own on the shared filesystem, no job of a load or a lag probe."""
    site = subprocess.run([sys.executable, "-m", "minihpc", "site", "local"], cwd=ROOT, capture_output=True,
                          text=True, check=True, stdin=subprocess.DEVNULL).stdout.strip()
    shim, calls = tmp_path / "bin", tmp_path / "docker-calls.log"
    shim.mkdir()
    (shim / "docker").write_text(f"#!/bin/sh\necho \"docker $*\" >> {calls}\nexit 97\n")
    (shim / "docker").chmod(0o755)
    wf = tmp_path / "prove"
    shutil.copytree(PROVE_WORKFLOW, wf)
    name = "test-prove-where"
    started = {s: containers_started(s) for s in ("slurmctld", *client.facts.nodes)}
    since = client.now()
    work = f"{client.facts.shared}/{client.facts.lab_user}-site"
    try:
        r, proof = prove(wf, name, "--site", site, snakemake=["--config", "where=1", "cheat=1"],
                         env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"})
        copied = client.sh(f"cat {work}/{name}.prove-reference-1/results/where.txt "
                           f"{work}/{name}.prove-policy/results/where.txt").out.split()
        nfs = client.root("minihpc-nfs show").out
    finally:
        client.sh(f"rm -rf {work}/{name}.prove-*")
    assert r.returncode == 1 and proof["verdict"] == "fail", r.stdout[-3000:] + r.stderr
    assert copied[0] == copied[1] and copied[0] in client.facts.nodes, f"the job's copy landed: {copied}"
    bad = [(f["path"], f["rule"], f["verdict"]) for f in proof["findings"]
           if f["verdict"] in ("differs", "missing under the policy")]
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
    # On the site: its work directory, the audit, and no fault at all.
    assert proof["faults"] == [] and "faults" not in proof["runs"], proof["runs"]
    assert all(run["directory"].startswith(f"{work}/{name}.prove-") for run in proof["runs"].values())
    assert {c["area"] for c in proof["audit"]} >= {"retries", "profile applied", "memory", "runtime"}, proof["audit"]
    assert not calls.exists(), calls.read_text()
    assert {s: containers_started(s) for s in started} == started, "a container was restarted"
    assert name not in nfs, nfs  # (test_shared_eio's rules may be there: side by side, its own paths)
    jobs = client.sacct(since, ("JobID", "JobName", "State", "WorkDir"), all_users=True, user=ROOT_USER)
    # (A lag probe of test_shared_eio's proof, side by side, works in that proof's own directory.)
    assert not [j for j in jobs if j["JobName"] == "minihpc-busy" or j["State"] == "NODE_FAIL" or (
        j["JobName"] == "minihpc-lag" and j["WorkDir"].startswith(work))], jobs
    assert [j for j in jobs if j["WorkDir"] == f"{work}/{name}.prove-policy"], "the policy run went through SLURM"


def containers_started(service: str) -> str:
    return containers.docker("inspect", "-f", "{{.State.StartedAt}}", containers.id(service)).strip()


@pytest.mark.cost(95)
def test_a_staging_profile_is_proven_with_its_staging_and_without_and_a_path_it_changes_is_named(
        tmp_path: Path, client: Client) -> None:
    """A profile that stages job IO through the nodes' scratch (the fs storage
    plugin): `prove` runs it as given and once more without its storage
    settings (the `slurm` run). The workflow writing the command that made a
    file, its output's path in it, keeps its meaning through SLURM and loses
    it through staging: the proof fails on that file alone, in the staged run
    alone, and says staging changes it. The staged run's jobs stored their
    outputs through the storage and the unstaged run's did not (their logs).
    Four runs, no fault: about a minute and a half."""
    wf = tmp_path / "prove"
    shutil.copytree(PROVE_WORKFLOW, wf)
    name = "test-prove-staging"
    try:
        r, proof = prove(wf, name, "--profile", str(ROOT / "tests/workflows/prove-staging-profile"), "--faults",
                         "none", snakemake=["--config", "cmdline=1", "part_seconds=1"])
        runs = {run: json.loads((wf / f".minihpc/prove/{run}/report.json").read_text()) for run in proof["runs"]}
        assert all(len(runs[run]["kept_logs"]) >= 4 for run in ("slurm", "policy")), "each part job's log kept"
        stored = {run: client.sh(f"cd {runs[run]['remote']} && cat {' '.join(runs[run]['kept_logs'])} | "
                                 "grep -c '^Storing in storage: ' || true").out.strip() for run in ("slurm", "policy")}
    finally:
        remove_proof(client, name)
    assert r.returncode == 1 and proof["verdict"] == "fail", r.stdout[-3000:] + r.stderr
    assert list(proof["runs"]) == ["reference-1", "reference-2", "slurm", "policy"], proof["runs"]
    bad = [(f["path"], f["run"], f["verdict"]) for f in proof["findings"]
           if f["verdict"] in ("differs", "missing under the policy")]
    assert bad == [("results/cmdline.txt", "policy", "differs")], proof["findings"]
    cmdline = next(f for f in proof["findings"] if f["path"] == "results/cmdline.txt" and f["run"] == "policy")
    assert cmdline["rule"] == "cmdline" and cmdline["why"].endswith("staging changes it"), cmdline
    slurm = {f["path"]: f["verdict"] for f in proof["findings"] if f["run"] == "slurm"}
    assert {p: v for p, v in slurm.items() if p.startswith("results/")} == {
        **{f"results/parts/{i}.txt": "same" for i in range(4)}, "results/sum.txt": "same",
        "results/cmdline.txt": "same", "results/stamp.txt": "nondeterministic"}, slurm
    assert "results/cmdline.txt (cmdline): differs in the policy run" in proof["summary"], proof["summary"]
    # The staged run staged (every part job's log), the other did not; the audit says so.
    staging = [(c["verdict"], c["seen"]) for c in proof["audit"] if c["area"] == "staging"]
    assert staging == [("ok", "4 of 4 job(s) stored their outputs through the storage (their logs: "
                              "'Storing in storage:')")], proof["audit"]
    assert int(stored["policy"]) >= 4 and stored["slurm"] == "0", stored
    assert all(j["node"] in client.facts.nodes for run in ("slurm", "policy") for j in runs[run]["jobs"])
    unstaged = yaml.safe_load((wf / ".minihpc/prove/unstaged-profile/config.yaml").read_text())
    assert not [k for k in unstaged if "storage" in k or k == "shared-fs-usage"] and unstaged["retries"] == 2, \
        unstaged
    md = (wf / ".minihpc/prove/report.md").read_text()
    assert "| `results/cmdline.txt` | policy | cmdline | differs |" in md, md


@pytest.mark.cost(220)
def test_a_rule_killed_for_memory_at_every_attempt_is_found_and_the_suggested_request_passes(
        tmp_path: Path, client: Client) -> None:
    """A profile asking too little memory for a rule, the same on every retry
    (the course's "killed for memory on attempt 1", never fixed): slurmstepd
    kills each attempt, the proof fails on that rule's missing output, and the
    audit finds it with a request that grows with the attempt (its need is
    not known). The suggested profile, used as it is written, then
    passes: an attempt killed on the way is a note, not a failure."""
    wf = tmp_path / "prove"
    shutil.copytree(PROVE_WORKFLOW, wf)
    name = "test-prove-hungry"
    args = ["results/hungry.txt", "--config", "hungry=500"]  # that rule alone: its attempts are the proof
    try:
        r, proof = prove(wf, name, "--profile", str(ROOT / "tests/workflows/prove-hungry-profile"), "--faults",
                         "none", snakemake=args)
        first = json.loads((wf / ".minihpc/prove/policy/report.json").read_text())
        assert r.returncode == 1 and proof["verdict"] == "fail", r.stdout[-3000:] + r.stderr
        bad = [(f["path"], f["rule"], f["verdict"]) for f in proof["findings"]
               if f["verdict"] in ("differs", "missing under the policy")]
        assert bad == [("results/hungry.txt", "hungry", "missing under the policy")], proof["findings"]
        # Killed by slurmstepd (OverMemoryKill: FAILED, not OUT_OF_MEMORY), its log says so.
        hungry = [(j["state"], j["req_mem"]) for j in first["jobs"] if j["rule"] == "hungry"]
        assert hungry == [("FAILED", "200M")] * 2, hungry  # both attempts (retries: 1)
        assert all("exceeded memory limit" in j["error"] for j in first["jobs"] if j["rule"] == "hungry"), first
        memory = {c["rule"]: c for c in proof["audit"] if c["area"] == "memory"}
        assert memory["hungry"]["verdict"] == "finding", memory
        # Twice the 200 asked, or 1.5 x what the sampling saw it use before the kill, if more.
        grow = re.fullmatch(r"`mem_mb: (\d+)\*attempt` for hungry .*", memory["hungry"]["fix"])
        assert grow and int(grow[1]) >= 400, memory["hungry"]
        assert f"+    mem_mb: {grow[1]}*attempt" in proof["suggested_diff"], proof["suggested_diff"]
        r, proof = prove(wf, name, "--profile", ".minihpc/prove/suggested-profile", "--faults", "none",
                         snakemake=args)
        second = json.loads((wf / ".minihpc/prove/policy/report.json").read_text())
    finally:
        remove_proof(client, name)
    assert r.returncode == 0 and proof["verdict"] == "pass", r.stdout[-3000:] + r.stderr
    assert next(f for f in proof["findings"] if f["path"] == "results/hungry.txt")["verdict"] == "same"
    # The request grows with the attempt: the last one finished, any before it killed (a note).
    hungry = [(j["state"], j["req_mem"]) for j in second["jobs"] if j["rule"] == "hungry"]
    base = int(grow[1])
    assert hungry == [*(("FAILED", f"{base * k}M") for k in range(1, len(hungry))),
                      ("COMPLETED", f"{base * len(hungry)}M")], hungry
    memory = next(c for c in proof["audit"] if c["area"] == "memory" and c["rule"] == "hungry")
    assert memory["verdict"] == ("note" if len(hungry) > 1 else "ok"), memory


@pytest.mark.cost(45)
def test_a_group_larger_than_any_node_is_found_with_slurms_words(tmp_path: Path, client: Client) -> None:
    """The four parts grouped into one job at 2000 MiB each: no node holds
    8000 MiB, sbatch refuses the group, and the SLURM plugin (2.8.0) loses
    sbatch's words. The audit finds the group with its members' requests
    added up and SLURM's own refusal (`sbatch --test-only`, nothing
    submitted), and names the largest node. About a minute."""
    wf = tmp_path / "prove"
    shutil.copytree(PROVE_WORKFLOW, wf)
    name = "test-prove-group"
    since = client.now()
    try:
        r, proof = prove(wf, name, "--faults", "none", snakemake=[
            "--groups", "part=g", "--group-components", "g=4", "--set-resources", "part:mem_mb=2000", "--keep-going",
            "--config", "part_seconds=1"])
    finally:
        remove_proof(client, name)
    assert r.returncode == 1 and proof["verdict"] == "fail", r.stdout[-3000:] + r.stderr
    fit = [c for c in proof["audit"] if c["area"] == "node fit"]
    biggest = max(int(n["mem"]) for n in client.nodes())
    assert [(c["rule"], c["verdict"]) for c in fit] == [("g", "finding")], proof["audit"]
    assert fit[0]["seen"] == ("sbatch refused the group g job: allocation failure: Memory required by task is not "
                              "available (sbatch --test-only, its jobs' requests added up); its jobs together ask 4 "
                              "CPUs and 8000 MiB"), fit[0]
    assert f"(the largest node: 2 CPUs, {biggest} MiB)" in fit[0]["fix"], fit[0]
    assert "1 profile finding(s): node fit (g)" in proof["summary"], proof["summary"]
    jobs = client.sacct(since, ("JobID", "JobName", "WorkDir"))
    assert not [j for j in jobs if j["WorkDir"].startswith(f"{client.facts.shared}/{name}.prove-policy")], \
        "the group never ran: --test-only submitted nothing"

