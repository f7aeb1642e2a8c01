"""Helpers for tests that drive the live cluster."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from minihpc import ROOT
from minihpc.cluster import ROOT_USER, parse_sacct
from minihpc.cluster import Cluster as Client
from minihpc.facts import Facts
from minihpc.proofs import Proof
from minihpc.transport import containers

T = TypeVar("T")


@dataclass
class Cluster:
    root: Path
    client: Client

    @property
    def facts(self) -> Facts:
        return self.client.facts

    @property
    def nodes(self) -> int:
        return len(self.facts.nodes)

    @property
    def lab_user(self) -> str:
        return self.facts.lab_user

    @property
    def compute_names(self) -> list[str]:
        return list(self.facts.nodes)

    @property
    def slurm_services(self) -> list[str]:
        return self.facts.slurm_services


    def host(self, service: str, user: str | None = None) -> Node:
        """A node as `user` (root if none), reached through the cluster client."""
        return Node(self.client, service, user or ROOT_USER)

    def as_user(self, service: str = "login") -> Node:
        return self.host(service, self.lab_user)

    def logs(self, service: str, since: str = "10m") -> str:
        """The service's container log (what `minihpc logs SERVICE` shows), its lines unprefixed."""
        return containers.logs(service, since=since, prefix=False, timeout=300)

    def story(self, since: str = "10m") -> str:
        """What the controller and the nodes said about nodes and jobs going
        wrong since `since`, and the nodes' states now: for a failure whose
        cause was the cluster's, not the test's."""
        pattern = re.compile(r"NODE_FAIL|not responding|now responding|DOWN|DRAIN|drain|[Ee]rror|requeue|"
                             r"reboot|epilog:|scratchdir:|nodecheck:|[Ll]aunch fail")
        lines = [f"{service}: {line}" for service in ["slurmctld", *self.compute_names]
                 for line in self.logs(service, since).splitlines() if pattern.search(line)]
        nodes = self.host("login").run("sinfo -N -h -o '%N %T %E' | sort -u").stdout
        return "\n".join(["nodes now:", nodes.strip(), "what the logs said:", *lines[-60:]])

    def inspect(self, service: str) -> dict:
        return json.loads(containers.docker("inspect", containers.id(service)))[0]


def started_containers() -> list[str]:
    """Each container of the cluster, running or not, with when it was
    started: a recreation or a restart changes its line."""
    ids = containers.ps("{{.ID}}")
    assert ids.returncode == 0, ids.stderr
    if not ids.stdout.split():
        return []
    r = containers.inspect("{{.Name}} {{.Id}} {{.State.StartedAt}}", *ids.stdout.split())
    assert r.returncode == 0, r.stderr
    return sorted(r.stdout.splitlines())


@dataclass
class Ran:
    rc: int
    stdout: str
    stderr: str


@dataclass
class Node:
    """One node as one user: commands through the cluster client, with their
    standard output and error apart (so a test can say which carried what)."""

    client: Client
    node: str
    user: str

    def run(self, cmd: str) -> Ran:
        rc, out, err = self.client.pipe(cmd, node=self.node, user=self.user)
        return Ran(rc, out.decode(errors="replace"), err)

    def exists(self, path: str) -> bool:
        return self.run(f"test -e {q(path)}").rc == 0

    def mode(self, path: str) -> int:
        return int(run_ok(self, f"stat -c %a {q(path)}"), 8)


def run_ok(host: Node, cmd: str) -> str:
    r = host.run(cmd)
    assert r.rc == 0, f"{cmd!r} failed with {r.rc}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def eventually(fn: Callable[[], T], timeout: float = 60, interval: float = 1.0,
               what: str | Callable[[], str] = "") -> T:
    """Poll fn until it returns a truthy value; fail with its last value.
    `what` may be a callable, to say the state at the timeout, not at the start."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = fn()
    if not value and callable(what):
        try:
            what = what()
        except Exception as e:  # noqa: BLE001 - the timeout is the failure; how it was said is secondary
            what = f"(what was waited for could not be said: {e!r})"
    assert value, f"timed out after {timeout}s waiting for {what or fn}"
    return value


def q(s: str) -> str:
    return shlex.quote(s)


def assert_passed(core: Proof) -> None:
    """A core or demo of the course passed: it checked something, and every check held."""
    assert core.checks, "a core that checks nothing proves nothing"
    failed = [f"{c.name}: {c.evidence[:400]}" for c in core.failed]
    assert not failed, "\n".join(failed)


def sbatch_waited(options: str) -> str:
    """A shell script: `sbatch --parsable OPTIONS`, the job's id printed, then
    the job polled every 0.5 s until it has ended, its epilog done; it exits
    0 only if the job COMPLETED with exit code 0 (else its record on stderr).
    What `sbatch --wait` does, but sbatch looks at the job 2, 10 and 42 s
    after submitting it (its sleep grows fourfold): a job of a second costs 10."""
    return (f"j=$(sbatch --parsable {options}) || exit 1; j=${{j%%;*}}; echo \"$j\"; "
            "for _ in $(seq 1200); do s=$(scontrol show job -o \"$j\" 2>/dev/null); case $s in "
            "''|*JobState=PENDING*|*JobState=CONFIGURING*|*JobState=RUNNING*|*JobState=COMPLETING*) sleep 0.5;; "
            "*) break;; esac; done; "
            "case $s in *'JobState=COMPLETED '*' ExitCode=0:0 '*) exit 0;; "
            "*) echo \"job $j: ${s:-not found}\" >&2; exit 1;; esac")


def keep(cluster: Cluster, name: str) -> dict[str, str]:
    """Something a user made that must outlive what the cluster goes through:
    a file on /shared (its checksum) and a finished job (its id)."""
    user = cluster.as_user("login")
    mark = f"{cluster.facts.shared}/test-kept-{name}/kept.bin"
    run_ok(user, f"mkdir -p $(dirname {mark}) && head -c 100000 /dev/urandom > {mark}")
    return {"mark": mark, "sum": run_ok(user, f"sha256sum {mark}").split()[0],
            "job": run_ok(user, sbatch_waited("-o /dev/null --chdir /tmp --wrap true")).strip()}


def assert_kept(cluster: Cluster, kept: dict[str, str]) -> None:
    """The file is unchanged, the job is still in accounting, and job ids
    continue from the controller's saved state; then the file is removed."""
    user = cluster.as_user("login")
    assert run_ok(user, f"sha256sum {kept['mark']}").split()[0] == kept["sum"]
    # Accounting is delivered to slurmdbd asynchronously: a job that ended just before the cluster went down
    # is sent again by slurmctld once it is back, and may reach sacct a moment after `up` returns.
    eventually(lambda: run_ok(user, f"sacct -n -X -P -j {kept['job']} -o State").strip() == "COMPLETED" or None,
               timeout=60, interval=2, what=f"job {kept['job']} COMPLETED in accounting")
    after = run_ok(user, sbatch_waited("-o /dev/null --chdir /tmp --wrap true")).strip()
    assert int(after) > int(kept["job"]), "the controller's state (next job id) must survive"
    run_ok(user, f"rm -rf $(dirname {kept['mark']})")


def job_rows(client: Client, job_id: str, fields: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """sacct's rows of a job and its steps, by JobID (the fields always include JobID and State)."""
    fields = ("JobID", "State", *[f for f in fields if f not in ("JobID", "State")])
    r = client.root(f"sacct -n -P -j {job_id} -o {','.join(fields)}")  # any user's job: root's view
    # Only sacct's own rows: a warning on stderr is not one.
    rows = "\n".join(line for line in r.out.splitlines() if line.count("|") == len(fields) - 1)
    return {row["JobID"]: row for row in parse_sacct(rows, fields)}


def ended(client: Client, job_id: str, fields: tuple[str, ...] = (), timeout: float = 120
          ) -> dict[str, dict[str, str]]:
    """job_rows() once the job is neither pending nor running, and its own
    record is in: a job row without its partition was put together from its
    steps' records (seen on Slurm 22.05 under load: a short job's step reached
    slurmdbd before the job's end did), its own fields still empty."""
    def done() -> dict[str, dict[str, str]] | None:
        rows = job_rows(client, job_id, (*fields, "Partition"))
        job = rows.get(job_id, {})
        ended = job.get("State", "") not in ("", "PENDING", "RUNNING", "COMPLETING")
        return rows if ended and job.get("Partition") else None
    return eventually(done, timeout=timeout, interval=2, what=f"job {job_id} to end")


# -- minihpc prove (tests/cluster/test_prove.py, test_shared_eio.py) ----------------

PROVE_WORKFLOW = ROOT / "tests/workflows/prove"


def prove(wf: Path, name: str, *options: str, snakemake: Sequence[str] = (), env: dict[str, str] | None = None
          ) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`minihpc prove wf --name name OPTIONS -- SNAKEMAKE`."""
    r = subprocess.run([sys.executable, "-m", "minihpc", "prove", str(wf), "--name", name, *options, "--",
                        *snakemake],
                       cwd=ROOT, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=900,
                       env=env)
    report = wf / ".minihpc/prove/report.json"
    assert report.is_file(), r.stdout[-3000:] + r.stderr
    return r, json.loads(report.read_text())


def remove_proof(client: Client, name: str) -> None:
    """The run directories of a proof named `name` on the shared filesystem."""
    client.sh(f"rm -rf {client.facts.shared}/{name}.prove-*")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 900, cwd: Path = ROOT,
        merged: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m minihpc ARGS` run in `cwd` (the checkout), with no standard input (as CI runs it) and
    `env` added to this process's environment; `merged`: its messages and Snakemake's output in one
    stream (stdout), in the order they came."""
    return subprocess.run([sys.executable, "-m", "minihpc", *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merged else subprocess.PIPE, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=timeout, env={**os.environ, **(env or {})})


def ssh_argv(port: int, key: Path, known_hosts: Path, login: str, command: str) -> list[str]:
    """ssh to this machine's login node as `login` with `key` alone, the host key checked strictly."""
    return ["ssh", "-p", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}", "-o", "LogLevel=ERROR",
            f"{login}@127.0.0.1", command]
