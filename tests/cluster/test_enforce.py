"""A site that enforces less, seen as the lab user: on a cluster brought up
with `--enforce none --def-mem-per-cpu 700` (make smoke SNAKEMAKE=..., whose
cluster stands for such a site, as the SLURM plugin's own CI cluster is) a
step over its memory request completes, a job outlives its time limit and a
job without --mem gets 700 MiB per CPU; then `minihpc up` gives the running
cluster the defaults back. test_limits.py proves the enforcing cluster.

Run by make smoke only (the make test cluster enforces, and changing that
would change every other test's rules): side by side with that smoke's other
tests, whose jobs never reach a limit, and about 100 s of it waiting (Slurm
checks time limits every 30 s, so a job with a one-minute limit must still
run at 95 s to show that none was enforced)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time

import pytest
from support import ended, eventually

from minihpc import ROOT, RUN_DIR
from minihpc.cluster import Cluster as Client
from minihpc.facts import Facts

pytestmark = [pytest.mark.stack, pytest.mark.smoke_only]

DIR = "/shared/test-enforce"
HOLD = "import sys, time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(8)"
# Past a one-minute limit and the next two of slurmctld's 30-s checks.
OUTLIVE_S = 95


def up(*flags: str) -> str:
    r = subprocess.run([sys.executable, "-m", "minihpc", "up", *flags], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stderr


def facts() -> Facts:
    """The facts as `up` wrote them last (the client's own were read when it was made)."""
    return Facts.read(RUN_DIR)


def config(client: Client) -> dict[str, str]:
    lines = client.sh("scontrol show config").out.splitlines()
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in lines) if v}


def submit(client: Client, name: str, sbatch: str, cmd: str) -> str:
    r = client.sh(f"sbatch --parsable -J {name} -o {DIR}/{name}.out {sbatch} --wrap {shlex.quote(cmd)}", workdir=DIR)
    assert r.rc == 0, r.out
    return r.out.strip().splitlines()[-1]


def test_a_site_without_memory_or_time_enforcement_lets_jobs_past_their_requests(client: Client) -> None:
    f = facts()
    assert (f.enforce, f.def_mem_per_cpu) == ([], 700), \
        f"a cluster enforcing {f.enforce} ({f.def_mem_per_cpu} MiB per CPU): make smoke SNAKEMAKE=... brings it up " \
        "with --enforce none --def-mem-per-cpu 700"
    c = config(client)
    assert "OverMemoryKill" not in c.get("JobAcctGatherParams", ""), c
    assert c["OverTimeLimit"] == "UNLIMITED" and c["DefMemPerCPU"] == "700", c
    client.sh(f"rm -rf {DIR} && mkdir -p {DIR}")
    hog = submit(client, "hog", "--mem=100M", f"python3 -c {shlex.quote(HOLD)}")
    late = submit(client, "late", "--mem=100M -t 1", f"sleep {OUTLIVE_S + 30}")
    nomem = submit(client, "nomem", "-c 1", "true")
    try:
        # Counted from when it is first seen running (so it has run at least that long), while the others end.
        eventually(lambda: client.sh(f"squeue -h -j {late} -o %T").out.strip() == "RUNNING", timeout=60,
                   interval=1, what=f"job {late} running")
        started = time.monotonic()
        r = ended(client, hog, ("JobID", "State", "MaxRSS", "ReqMem"), timeout=120)
        assert r[hog]["State"] == "COMPLETED", r
        assert client.sh(f"grep -c 'Exceeded job memory limit' {DIR}/hog.out").out.strip() == "0"
        assert ended(client, nomem, ("JobID", "ReqMem"), timeout=60)[nomem]["ReqMem"] == "700M"
        time.sleep(max(0.0, OUTLIVE_S - (time.monotonic() - started)))
        row = client.sh(f"squeue -h -j {late} -o '%T %M %l'").out.split()
        assert row[:1] == ["RUNNING"] and row[2] == "1:00", f"job {late} past its one-minute limit: {row}"
    finally:
        client.sh(f"scancel {late}")


# Alone: it changes the rules every job on the cluster runs under.
@pytest.mark.alone
def test_up_gives_a_running_cluster_the_enforcement_defaults_back(client: Client) -> None:
    said = up()
    assert "enforcing memory, time" in said, said
    c = config(client)
    assert "OverMemoryKill" in c["JobAcctGatherParams"] and c["OverTimeLimit"].split()[0] == "0", c
    assert c["DefMemPerCPU"] == str(facts().def_mem_per_cpu) and facts().enforce == ["memory", "time"]
