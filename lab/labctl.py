"""Drive the lab on the live cluster, as the lab user, on the shared filesystem.

One place that knows how to lay a fresh lab out on /shared, run commands in it
on the login node, and keep their output as proof artifacts under .proof/.
Used by `make lab`, `make core*`, `make confirm` and the cluster tests.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = str(ROOT / "cluster/compose.sh")
LAB_USER = "student"
SHARED = "/shared"


@dataclass
class Result:
    cmd: str
    rc: int
    out: str
    seconds: float

    def text(self) -> str:
        body = self.out if not self.out or self.out.endswith("\n") else self.out + "\n"
        return f"$ {self.cmd}\n{body}[exit {self.rc}]\n"


def _exec(cmd: str, service: str, user: str, workdir: str | None) -> list[str]:
    where = ["-w", workdir] if workdir else []
    return [COMPOSE, "exec", "-T", "-u", user, *where, service, "bash", "-lc", cmd]


def node_sh(cmd: str, service: str = "login", user: str = LAB_USER, workdir: str | None = None,
            timeout: float = 900) -> Result:
    """Run a bash login-shell command on a node; stdout+stderr merged."""
    t = time.monotonic()
    r = subprocess.run(_exec(cmd, service, user, workdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, check=False)
    return Result(cmd, r.returncode, r.stdout, time.monotonic() - t)


@dataclass
class Running:
    """A command started on a node and not yet waited for."""

    cmd: str
    proc: subprocess.Popen
    started: float


@dataclass
class Lab:
    """A lab working directory on the shared filesystem."""

    name: str = "lab"
    proof_dir: Path = ROOT / ".proof"
    results: list[Result] = field(default_factory=list)

    @property
    def workdir(self) -> str:
        return f"{SHARED}/{self.name}"

    def sh(self, cmd: str, service: str = "login", timeout: float = 900, user: str = LAB_USER) -> Result:
        """Run a bash command in the workdir (as the lab user unless told); stdout+stderr merged."""
        res = node_sh(cmd, service, user, workdir=self.workdir, timeout=timeout)
        self.results.append(res)
        return res

    def spawn(self, cmd: str, service: str = "login") -> Running:
        """Start a command in the workdir as the lab user and return at once
        (to watch the cluster while it runs); collect() waits for it."""
        proc = subprocess.Popen(_exec(cmd, service, LAB_USER, self.workdir), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        return Running(cmd, proc, time.monotonic())

    def collect(self, running: Running, timeout: float = 900) -> Result:
        out, _ = running.proc.communicate(timeout=timeout)
        res = Result(running.cmd, running.proc.returncode, out, time.monotonic() - running.started)
        self.results.append(res)
        return res

    def snakemake(self, args: str, timeout: float = 900) -> Result:
        return self.sh(f"snakemake {args}", timeout=timeout)

    def reset(self) -> None:
        """A clean lab: the workflow and the profiles, nothing else."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for src, arc in ((ROOT / "lab/Snakefile", "Snakefile"), (ROOT / "lab/scripts", "scripts"),
                             (ROOT / "lab/workflow", "workflow"), (ROOT / "profiles", "profiles")):
                tar.add(src, arcname=arc, filter=_lab_owned)
        q = shlex.quote(self.workdir)
        script = f"rm -rf {q} && mkdir -p {q} && tar -x -C {q}"
        r = subprocess.run([COMPOSE, "exec", "-T", "-u", LAB_USER, "login", "bash", "-c", script],
                           input=buf.getvalue(), capture_output=True, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"could not lay out {self.workdir}: {r.stderr.decode()}")

    def read(self, path: str) -> str | None:
        r = self.sh(f"cat {shlex.quote(path)}")
        self.results.pop()
        return r.out if r.rc == 0 else None

    def exists(self, path: str) -> bool:
        r = self.sh(f"test -e {shlex.quote(path)}")
        self.results.pop()
        return r.rc == 0

    def proof(self, name: str, *parts: Result | str) -> Path:
        """Write .proof/<name>.txt from real command output."""
        self.proof_dir.mkdir(parents=True, exist_ok=True)
        path = self.proof_dir / f"{name}.txt"
        path.write_text("".join(p.text() if isinstance(p, Result) else p for p in parts))
        return path


def _lab_owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if "__pycache__" in info.name:
        return None
    info.uid = info.gid = 1000
    info.uname = info.gname = LAB_USER
    return info


def sacct_jobs(lab: Lab, since: str, fields: str = "JobID,JobName,Comment,NodeList,State") -> list[dict[str, str]]:
    """Allocations (not steps) the lab user started since a `date +%FT%T` stamp."""
    r = lab.sh(f"sacct -n -X -P -S {shlex.quote(since)} -o {fields}")
    lab.results.pop()
    keys = fields.split(",")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in r.out.splitlines() if line.strip()]


def now_stamp(lab: Lab) -> str:
    r = lab.sh("date +%FT%T")
    lab.results.pop()
    time.sleep(1)  # sacct -S has one-second resolution
    return r.out.strip()


def compute_nodes() -> list[str]:
    """The compute nodes the running cluster has, as SLURM knows them."""
    r = node_sh("sinfo -h -N -o %N")
    if r.rc != 0:
        raise RuntimeError(f"sinfo failed on the login node: {r.out}")
    return sorted(set(r.out.split()), key=lambda n: int(n[1:]))


def set_nfs_profile(*args: str) -> Result:
    """Switch the cluster's NFS-style client profile (`minihpc-nfs set ARGS`);
    returns once every node's client (login and each compute node) runs it."""
    r = node_sh("minihpc-nfs set " + " ".join(shlex.quote(a) for a in args), user="root")
    m = re.search(r"^profile: \S+ \(([0-9a-f]{12})\)", r.out, re.M)
    if r.rc != 0 or m is None:
        raise RuntimeError(f"minihpc-nfs set {' '.join(args)} failed: {r.out}")
    digest = m.group(1)
    nodes = ["login", *compute_nodes()]
    deadline = time.monotonic() + 20
    for node in nodes:
        while digest not in node_sh("minihpc-nfs stats", service=node, user="root").out:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the NFS client on {node} did not switch to {args[0]} ({digest})")
            time.sleep(0.3)
    return r
