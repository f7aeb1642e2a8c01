"""Every knob, name and path is checked before anything starts: a bad one is
refused with exit 2 and one line naming it, what is allowed and the fix, and
the running cluster is left exactly as it was (the same containers, started
at the same time, and the same files on /shared)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from support import Cluster, run_ok, started_containers

from minihpc import ROOT, RUN_DIR

# Alone: "nothing changed" is judged on everything under /shared, where other tests write.
pytestmark = pytest.mark.alone


def containers() -> list[str]:
    """Each container of the cluster with when it was started: a recreation or restart changes it."""
    return started_containers()


def shared_sum(cluster: Cluster) -> str:
    """Every path, size, mode and mtime under /shared, hashed (read as root on the login node)."""
    return run_ok(cluster.host("login"), f"cd {cluster.facts.shared} && find . -printf '%p %s %m %T@\\n' | sort | "
                                         "sha256sum").split()[0]


def state(cluster: Cluster) -> tuple[list[str], str]:
    """What a refused command must leave as it was: the containers and everything under /shared."""
    return containers(), shared_sum(cluster)


CASES = [  # (environment, arguments, what stderr says)
    ({"NODES": "0"}, ["up"], "NODES=0 is out of range; allowed 1 to 16 (e.g. NODES=2)"),
    ({"NODES": "two"}, ["up"], "NODES='two' is not a whole number; use e.g. NODES=2"),
    ({"NODE_CPUS": "0"}, ["up"], "NODE_CPUS=0 is out of range; allowed 1 to"),
    ({"NODE_MEM_MB": "100"}, ["up"], "NODE_MEM_MB=100 is out of range; allowed"),
    ({"BIGMEM_MB": "2500"}, ["up"], "BIGMEM_MB=2500 is not above NODE_MEM_MB=3000"),
    # Bigger than this machine (a few tens of GiB): Slurm would drain it; the bigmem node is twice that.
    ({"NODE_MEM_MB": "500000"}, ["up"], "a node of 1000000 MiB does not fit this host"),
    ({"GPUS": "99"}, ["up"], "GPUS=99 is out of range; allowed 0 to 16"),
    ({"SCRATCH_MB": "1"}, ["up"], "SCRATCH_MB=1 is out of range; allowed 16 to 65536"),
    ({"READY_TIMEOUT": "soon"}, ["up"], "READY_TIMEOUT='soon' is not a whole number; use e.g. READY_TIMEOUT=180"),
    ({"READY_TIMEOUT": "3"}, ["up"], "--timeout 3 is too short; give the cluster at least 10 s"),
    ({"NFS_PROFILE": "fast"}, ["up"], "no NFS profile 'fast'; choose one of: off, linux"),
    ({}, ["up", "--slurm", "23.02"], "--slurm '23.02' is not a Slurm release minihpc builds; give one of 22.05"),
    # The running cluster keeps its release: another is refused, with the way to make a new one.
    ({}, ["up", "--slurm", "22.05"], "a cluster keeps its release (Slurm upgrades its state two releases at most"),
    ({}, ["build", "--slurm", "9"], "--slurm '9' is not a Slurm release minihpc builds"),
    # A pair pip cannot install together (Snakemake 8's storage interface <4; fs 1.1 needs >=4.1).
    ({}, ["up", "--snakemake", "8.30.0", "--fs-plugin", "1.1.3"],
     "--snakemake 8.30.0 with --fs-plugin 1.1.3: no set minihpc pins has these versions together; give one of the "
     "sets known to work together: --snakemake 9.27.1"),
    ({"SLURM_PLUGIN_VERSION": "1.9.2"}, ["build"], "--slurm-plugin 1.9.2: no set minihpc pins has it"),
    # The running cluster keeps its stack (its images were built with it).
    ({}, ["up", "--snakemake", "8.30.0"], "and a cluster keeps the stack its images were built with; nothing was "
                                          "changed; leave the version flags out to keep it"),
    ({}, ["up", "--enforce", "memory,cpu"], "--enforce 'memory,cpu': 'cpu' is not something minihpc enforces; give a "
                                            "comma-separated list of memory, time, or none"),
    ({"DEF_MEM_PER_CPU": "5"}, ["up"], "--def-mem-per-cpu '5' is not a whole number of MiB from 100 to 1048576"),
    # The class (minihpc class) and the login node beyond this machine.
    ({}, ["up", "--ssh-address", "0.0.0.0"], "SSH_ADDRESS=0.0.0.0 publishes the login node's sshd beyond this machine"),
    ({}, ["class", "add", "0"], "class add 0: a class has at least one learner"),
    ({}, ["class", "add", "1000"], "class add 1000: "),  # the limit: what this host holds, or names' end
    ({}, ["class", "remove", "x;id", "--yes"], "'x;id' is not a learner's name"),
    ({}, ["class", "remove", "learner99", "--yes"], "learner99 is not in the class"),
    ({}, ["class", "add", "$(id)"], "argument N: '$(id)' is not a number of learners"),
    ({}, ["class", "check", "learner01;id"], "'learner01;id' is not a learner's name"),
    ({}, ["class", "check", "learner98", "core1"], "learner98 is not in the class"),
    ({}, ["class", "page", "--address", "0.0.0.0"], "--address 0.0.0.0 serves the class's page beyond this machine"),
    ({}, ["class", "page", "--address", "127.0.0.1;id"], "--address '127.0.0.1;id' is not an IPv4 address"),
    ({}, ["class", "page", "--port", "99999"], "argument --port: '99999' is not a port (1 to 65535)"),
    ({}, ["nfs", "set", "nope"], "no NFS profile 'nope'; choose one of: off"),
    ({}, ["nfs", "set", "off", "--set", "delay"], "--set 'delay': use key=value, e.g. --set delay=5"),
    ({}, ["nfs", "set", "off", "--set", "speed=9"], "unknown profile setting 'speed'; settable: acdirmax"),
    ({}, ["nfs", "set", "off", "--fault", "EBOGUS:op=read"], "fault error 'EBOGUS' is not one of EIO"),
    ({}, ["nfs", "set", "off", "--fault", "EIO:op=fly,count=1"], "fault op 'fly'"),
    ({}, ["core", "9"], "no core '9'; choose one of 1, 2, 3-latency"),
    ({}, ["demo", "demo-nothing"], "no demo 'demo-nothing'"),
    ({}, ["fault", "melt", "c1"], "no fault 'melt'; choose one of kill"),
    ({}, ["fault", "kill", "c9"], "'c9' is not a service of this cluster"),
    ({}, ["fault", "cut", "login"], "'login' is not a node of this cluster"),
    ({}, ["fault", "nfs-eio", "/etc/passwd"], "fault nfs-eio needs a path under /shared"),
    ({}, ["scratch", "c9"], "no node c9; this cluster has login c1"),
    ({}, ["run", "/nonexistent/workflow"], "/nonexistent/workflow is not a directory"),
    ({}, ["prove", "/nonexistent/workflow"], "/nonexistent/workflow is not a directory"),
    ({}, ["prove", str(ROOT / "tests/workflows/prove"), "--name", "w" * 50], "is too long for prove's run"),
    ({}, ["prove", str(ROOT / "tests/workflows/prove"), "--", "-s", "../faults/Snakefile"],
     "--snakefile ../faults/Snakefile is outside the workflow directory"),
    ({}, ["prove", str(ROOT / "tests/workflows/prove"), "--compare", "cmp 'a"], "--compare \"cmp 'a\" cannot be split"),
    ({}, ["prove", str(ROOT / "tests/workflows/prove"), "--faults", "node-kill,fire"],
     "--faults: no fault 'fire' for prove"),
    ({}, ["prove", str(ROOT / "tests/workflows/prove"), "--faults", "slow-nfs=molasses"],
     "--faults slow-nfs=molasses: no NFS profile 'molasses'"),
    ({}, ["prove", str(ROOT / "tests/workflows/prove"), "--site", "/nonexistent/site.yaml", "--faults", "eio"],
     "faults are never applied to a real site (--site)"),
    ({}, ["destroy"], "needs confirmation and there is no terminal to ask; pass --yes"),
]


def refuse(env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "minihpc", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False)


@dataclass
class Refused:
    """What each case's command did (by case index), and the cases that changed the cluster."""

    results: list[subprocess.CompletedProcess[str]]
    changed: set[int] = field(default_factory=set)
    unexplained: bool = False  # the cases together changed it, and none did when run again alone


@pytest.fixture(scope="module")
def refused(cluster: Cluster) -> Refused:
    """Every case's command, four at a time (each only reads and refuses: they
    cannot disturb one another), the cluster judged before and after all of
    them. Changed, each case runs again alone, judged on its own, to name
    the one that did it."""
    before = state(cluster)
    with ThreadPoolExecutor(4) as pool:
        seen = Refused(list(pool.map(lambda case: refuse(case[0], case[1]), CASES)))
    last = state(cluster)
    if last != before:
        for i, (env, args, _) in enumerate(CASES):
            refuse(env, args)
            now = state(cluster)
            if now != last:
                seen.changed.add(i)
            last = now
        seen.unexplained = not seen.changed
    return seen


@pytest.mark.parametrize(("case", "message"), [(i, m) for i, (_, _, m) in enumerate(CASES)],
                         ids=[" ".join([*(f"{k}={v}" for k, v in e.items()), *a]) for e, a, _ in CASES])
def test_bad_input_is_refused_and_changes_nothing(refused: Refused, case: int, message: str) -> None:
    r = refused.results[case]
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("minihpc: error: ") and message in lines[-1], r.stderr
    assert "Traceback" not in r.stderr
    assert case not in refused.changed, "this refused command changed the cluster (run again alone, it did again)"
    assert not refused.unexplained, "the refused commands together changed the cluster (none did run again alone)"


def test_make_destroy_asks_and_without_a_terminal_refuses(cluster: Cluster) -> None:
    """The README's own `make destroy` removes nothing unasked: no terminal, no YES=1, nothing happens."""
    before = state(cluster)
    r = subprocess.run(["make", "destroy"], cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=120, check=False, env={k: v for k, v in os.environ.items() if k != "YES"})
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert ("minihpc: error: remove the cluster's containers, volumes (accounting database, shared files) and "
            "secrets? needs confirmation and there is no terminal to ask; pass --yes (make: YES=1)") in r.stderr
    assert state(cluster) == before, "a refused destroy changed the cluster"
    assert (RUN_DIR / "cluster.json").is_file(), "the cluster's facts are still there"
