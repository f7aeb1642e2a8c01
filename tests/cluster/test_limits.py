"""What a site enforces, enforced here, seen as the lab user: memory sampled
for every step and a step over its request killed; a job without --mem given
DefMemPerCPU, not the node; the partition's default and maximum time; a
runtime limit ending in TIMEOUT; the containers' memory above RealMemory;
the epilog killing what a job left running, and nothing of anyone else's.

The probe jobs are submitted together once (the module's fixture) so the
slow ones (the TIMEOUT takes over a minute) run side by side."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import pytest
from support import Cluster, ended, eventually, run_ok

from minihpc import policy
from minihpc.cluster import Cluster as Client
from minihpc.cluster import sacct_kib
from minihpc.configs import CONTAINER_HEADROOM_MB

DIR = "/shared/test-limits"
# Touches every page of MB MiB, then holds them for S seconds.
HOLD = """import sys, time
b = bytearray(int(sys.argv[1]) * 2**20)
b[::4096] = b"x" * len(b[::4096])
print("holding", flush=True)
time.sleep(int(sys.argv[2]))
"""
# How long the stray processes of the `strays` probe would live without the epilog.
STRAY_S = 517
FIELDS = ("JobID", "State", "ExitCode", "ReqMem", "MaxRSS", "AveRSS", "Timelimit", "Elapsed")


@dataclass
class Probe:
    job: str
    log: str


def submit(client: Client, name: str, sbatch: str, cmd: str) -> Probe:
    log = f"{DIR}/{name}.out"
    r = client.sh(f"sbatch --parsable -J {name} -o {log} {sbatch} --wrap {shlex.quote(cmd)}", workdir=DIR)
    assert r.rc == 0, r.out
    return Probe(r.out.strip().splitlines()[-1], log)


def finished(client: Client, probe: Probe, timeout: float = 240) -> dict[str, dict[str, str]]:
    """sacct's rows of the probe's job and its steps, by JobID, once it has ended."""
    return ended(client, probe.job, FIELDS, timeout=timeout)


def told(cluster: Cluster, probe: Probe) -> str:
    """What the probe's job printed and what the daemons said about it: for
    a probe that ended otherwise than it must (a failure then says why)."""
    log = cluster.client.sh(f"cat {probe.log} 2>&1").out
    said = [f"{s}: {line}" for s in ["slurmctld", *cluster.compute_names]
            for line in cluster.logs(s).splitlines() if re.search(rf"\b{probe.job}\b", line)]
    return "\n".join([f"{probe.log}:", log, "the daemons on its job:", *said[-40:]])


def kib(value: str) -> float:
    """sacct's MaxRSS (e.g. 624604K, 1.2G) in KiB."""
    assert re.fullmatch(r"[\d.]+[KMG]?", value), f"not a size: {value!r}"
    return sacct_kib(value)


@pytest.fixture(scope="module")
def probes(client: Client) -> dict[str, Probe]:
    client.sh(f"rm -rf {DIR} && mkdir -p {DIR} && cat > {DIR}/hold.py", stdin=HOLD.encode())
    return {
        # Holds 600 MB under a 100 MB request: OverMemoryKill's poll must kill it.
        "hog": submit(client, "hog", "--mem=100M", "python3 hold.py 600 60"),
        # A batch step and an srun step, each holding 200 MB: both sampled.
        "steps": submit(client, "steps", "--mem=600M", "python3 hold.py 200 6 && srun python3 hold.py 200 6"),
        "nomem": submit(client, "nomem", "-c 1", "sleep 2"),
        "timeout": submit(client, "timeout", "--mem=100M -t 1", "sleep 600"),
    }


@pytest.mark.smoke
def test_a_step_over_its_memory_request_is_killed(client: Client, probes: dict[str, Probe]) -> None:
    p = probes["hog"]
    r = finished(client, p)
    job, batch = r[p.job], r[f"{p.job}.batch"]
    # Without task/cgroup Slurm kills the step by signal: FAILED with 0:9, never OUT_OF_MEMORY.
    assert (job["State"], job["ExitCode"]) == ("FAILED", "0:9"), r
    assert batch["State"].startswith("CANCELLED"), r
    assert kib(batch["MaxRSS"]) > 100 * 1024, f"MaxRSS {batch['MaxRSS']} must show the excess over 100M"
    log = client.sh(f"cat {p.log}").out
    # Killed holding its 600 MB, or on the way there on a loaded machine (the
    # poll came first): over the limit either way, by the numbers below.
    # slurmstepd says it in the job's output: "slurmstepd-c1: error: ..." up to
    # 24.11, "[2026-12-07T05:20:41.234] error: ..." from 26.05 (docs/versions.md).
    assert re.search(r"^(slurmstepd-\S+: |\[[\d\-T:.]+\] )error: Exceeded job memory limit", log, re.M), log
    assert re.search(rf"StepId={p.job}\.batch exceeded memory limit \(\d+ > 104857600\), being killed", log), log


@pytest.mark.smoke
def test_every_step_has_its_memory_sampled(cluster: Cluster, client: Client, probes: dict[str, Probe]) -> None:
    p = probes["steps"]
    r = finished(client, p)
    assert r[p.job]["State"] == "COMPLETED", f"{r}\n{told(cluster, p)}"
    for step in (f"{p.job}.batch", f"{p.job}.0"):
        assert kib(r[step]["MaxRSS"]) > 190 * 1024, f"{step}: {r[step]}"
        assert r[step]["AveRSS"], f"{step}: {r[step]}"


@pytest.mark.smoke
def test_a_job_without_mem_gets_def_mem_per_cpu_not_the_node(client: Client, probes: dict[str, Probe]) -> None:
    r = finished(client, probes["nomem"])
    f = client.facts
    assert r[probes["nomem"].job]["ReqMem"] == f"{f.def_mem_per_cpu}M", r
    assert f.mem_mb // f.cpus < f.mem_mb


@pytest.mark.smoke
def test_partition_time_limits(client: Client, probes: dict[str, Probe]) -> None:
    r = finished(client, probes["nomem"])
    assert r[probes["nomem"].job]["Timelimit"] == policy.DEFAULT_TIME, "a job without --time gets DefaultTime"
    too_long = client.sh("sbatch -t 7-00:00:01 --wrap true")
    assert too_long.rc != 0
    assert "Requested time limit is invalid (missing or exceeds some limit)" in too_long.out, too_long.out
    part = client.sh(f"scontrol show partition {client.facts.partitions[0]}").out
    assert f"DefaultTime={policy.DEFAULT_TIME}" in part and "MaxTime=04:00:00" in part, part


@pytest.mark.smoke
@pytest.mark.cost(60)
def test_a_runtime_limit_ends_in_timeout(client: Client, probes: dict[str, Probe]) -> None:
    p = probes["timeout"]
    r = finished(client, p, timeout=300)
    assert r[p.job]["State"] == "TIMEOUT", r
    assert r[p.job]["Timelimit"] == "00:01:00", r
    log = client.sh(f"cat {p.log}").out
    assert "DUE TO TIME LIMIT" in log, log


def test_containers_memory_sits_above_real_memory(cluster: Cluster) -> None:
    real = run_ok(cluster.as_user(), "sinfo -h -N -o '%N %m'").split()
    declared = dict(zip(real[::2], real[1::2], strict=True))
    for node in cluster.compute_names:
        limit = cluster.inspect(node)["HostConfig"]["Memory"]
        assert limit == (int(declared[node]) + CONTAINER_HEADROOM_MB) * 2**20, (node, limit, declared[node])



# Alone, and so its own job, not one of the probes: when no other job of the
# user's runs on the node, the epilog kills every process of theirs there, so
# another test's job ending there first would kill these strays (and this job's
# epilog would find nothing), or leave strays of its own for it to count.
@pytest.mark.alone
def test_the_epilog_kills_what_a_job_left_running(cluster: Cluster, client: Client) -> None:
    node = client.facts.nodes[0]
    client.sh(f"mkdir -p {DIR}")
    # Daemonised twice over: re-parented, out of proctrack/linuxproc's sight.
    p = submit(client, "strays", f"--mem=100M -w {node}", f"setsid sleep {STRAY_S} </dev/null >/dev/null 2>&1 & "
                                                          f"nohup sleep {STRAY_S + 1} >/dev/null 2>&1 & sleep 1")
    assert finished(client, p)[p.job]["State"] == "COMPLETED"
    # The epilog runs after the job's end is recorded: allow it a moment.
    eventually(lambda: client.root(f"pgrep -u {client.facts.lab_user} -f 'sleep {STRAY_S}'", node=node).rc == 1,
               timeout=30, what="the epilog to kill the job's strays")
    log = cluster.logs(node)
    assert f"epilog: job {p.job}: killed 2 process(es) it left behind" in log, log[-2000:]


# Alone: the epilog it runs kills all of the lab user's processes on the node only while no job of
# theirs runs there, and the strays it starts for both users are any ending job's epilog's to kill.
@pytest.mark.alone
def test_the_epilog_spares_other_users_and_other_jobs(client: Client) -> None:
    """Run by hand as the lab user, the epilog can signal nothing of another
    user's (its kill is the user's own). Run for a job while the user has no
    job on the node, it ends every process of theirs there, whatever job id
    its environment claims (a job's environment is its own to forge); the
    processes of another job that runs there are spared
    (test_isolation.py proves that with a real job), and so is a root process
    holding the user's effective uid, as slurmstepd does for a moment to open
    their files (it is theirs by its real uid, root)."""
    f, node = client.facts, client.facts.nodes[0]
    theirs = f"env SLURM_JOB_ID=424242 setsid sleep {STRAY_S + 2} </dev/null >/dev/null 2>&1 & echo started"
    mine = f"env SLURM_JOB_ID=424243 setsid sleep {STRAY_S + 3} </dev/null >/dev/null 2>&1 & echo started"
    # Root, the lab user's effective uid, dumpable again (so /proc shows it as theirs), as slurmstepd.
    stepd_like = (f"setsid python3 -c 'import ctypes, os, time; os.seteuid({f.lab_uid}); "
                  f"ctypes.CDLL(None).prctl(4, 1, 0, 0, 0); time.sleep({STRAY_S + 4})' </dev/null >/dev/null 2>&1 & "
                  "echo started")
    try:
        assert "started" in client.sh(theirs, node=node, user=f.other_user).out
        assert "started" in client.sh(mine, node=node).out
        assert "started" in client.root(stepd_like, node=node).out
        eventually(lambda: client.root(f"stat -c %U /proc/$(pgrep -f '[t]ime.sleep.{STRAY_S + 4}')",
                                       node=node).out.strip() == f.lab_user,
                   timeout=10, what="/proc showing the root process as the lab user's, as it shows slurmstepd")
        as_user = client.sh(f"SLURM_JOB_ID=424242 SLURM_JOB_UID={f.other_uid} /usr/local/sbin/minihpc-epilog",
                            node=node)
        assert as_user.rc == 0, as_user.out
        assert client.root(f"pgrep -u {f.other_user} -f 'sleep {STRAY_S + 2}'", node=node).rc == 0, \
            "the lab user's epilog run must not kill another user's process"
        # As Slurm runs it (root) for a job of the lab user's that is not 424243.
        for_job = client.root(f"SLURM_JOB_ID=424244 SLURM_JOB_UID={f.lab_uid} /usr/local/sbin/minihpc-epilog",
                              node=node)
        assert for_job.rc == 0, for_job.out
        assert client.root(f"pgrep -u {f.lab_user} -f 'sleep {STRAY_S + 3}'", node=node).rc != 0, \
            "a process claiming a job that does not run here is a stray like any other"
        assert client.root(f"pgrep -f '[t]ime.sleep.{STRAY_S + 4}'", node=node).rc == 0, \
            "a root process holding the lab user's effective uid is not theirs to kill"
    finally:
        # Each pattern bracketed, so that it matches not this shell's own command line (pkill would end it).
        client.root(f"pkill -f '[s]leep {STRAY_S + 2}'; pkill -f '[s]leep {STRAY_S + 3}'; "
                    f"pkill -f '[t]ime.sleep.{STRAY_S + 4}'; true", node=node)
