"""`minihpc prove --site` on tests/workflows/prove, against minihpc itself
over SSH: the workflow writing the host it ran on fails on that file and
names its rule, even when its SLURM job copies its output over the reference
runs' own afterwards; and no fault is applied on a site. Three runs (two
local side by side, then one through SLURM): about a minute. (The audit's
findings and the suggested profile, with the EIO fault: test_shared_eio.py;
every fault: `make test-action`, the Action's prove.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import PROVE_WORKFLOW, prove

from minihpc import ROOT
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
    # On the site: its work directory, the audit, and no fault at all.
    assert proof["faults"] == [] and "faults" not in proof["runs"], proof["runs"]
    assert all(run["directory"].startswith(f"{work}/{name}.prove-") for run in proof["runs"].values())
    assert {c["area"] for c in proof["audit"]} >= {"retries", "profile applied", "memory", "runtime"}, proof["audit"]
    assert not calls.exists(), calls.read_text()
    assert {s: containers_started(s) for s in started} == started, "a container was restarted"
    assert name not in nfs, nfs  # (test_shared_eio's rules may be there: side by side, its own paths)
    jobs = client.sacct(since, ("JobID", "JobName", "State", "WorkDir"), all_users=True)
    assert not [j for j in jobs if j["JobName"] in ("minihpc-busy", "minihpc-lag") or j["State"] == "NODE_FAIL"]
    assert [j for j in jobs if j["WorkDir"] == f"{work}/{name}.prove-policy"], "the policy run went through SLURM"


def containers_started(service: str) -> str:
    return containers.docker("inspect", "-f", "{{.State.StartedAt}}", containers.id(service)).strip()
