"""Drive the lab on the live cluster, as the lab user, on the shared filesystem.

One place that knows how to lay a fresh lab out on /shared, run commands in it
on the login node, and keep their output as proof artifacts under .proof/.
Used by `make lab`, `make core*`, `make confirm` and the cluster tests.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from minihpc import PROOF_DIR, ROOT, proofs
from minihpc.cluster import Cluster, Result, Running
from minihpc.facts import LAB_USER
from minihpc.sitefile import Site

__all__ = ["LAB_USER", "Lab", "Result", "Running", "cluster", "compute_nodes", "node_sh", "now_stamp",
           "sacct_jobs", "set_nfs_profile"]


# Where the lab runs: this context's innermost `on(site)`, else this machine's
# cluster. A context variable, so that a thread started with a copy of the
# context (the site check's proofs, side by side) keeps its site whatever the
# thread that started it does next.
_on: ContextVar[tuple[tuple[Cluster, Site | None, Path], ...]] = ContextVar("minihpc_lab_on", default=())
_local: list[Cluster] = []  # this machine's cluster, made on first use


def _top() -> tuple[Cluster, Site | None, Path]:
    stack = _on.get()
    if stack:
        return stack[-1]
    if not _local:
        _local.append(Cluster.local())
    return _local[0], None, PROOF_DIR


def cluster() -> Cluster:
    """The cluster the lab runs on: this machine's (`minihpc up`), or a site's while `on(site)` holds."""
    return _top()[0]


def current_proof_dir() -> Path:
    """Where the lab's proofs go: .proof/, or the site's while `on(site)` holds."""
    stack = _on.get()
    return stack[-1][2] if stack else PROOF_DIR


@contextmanager
def on(other: Cluster, site: Site | None, proofs: Path) -> Iterator[None]:
    """Run the lab on a site's cluster (over SSH), with minihpc's profiles
    made for that site (Site.profile), its proofs to `proofs`; on another
    cluster as it is (no site)."""
    token = _on.set((*_on.get(), (other, site, proofs)))
    try:
        yield
    finally:
        _on.reset(token)


def node_sh(cmd: str, service: str | None = None, user: str | None = None, workdir: str | None = None,
            timeout: float = 900) -> Result:
    """Run a bash login-shell command on a node (the login node) as a user (the
    lab user); stdout+stderr merged."""
    return cluster().sh(cmd, node=service, user=user, workdir=workdir, timeout=timeout)


@dataclass
class Lab:
    """A lab working directory on the shared filesystem."""

    name: str = "lab"
    proof_dir: Path = field(default_factory=current_proof_dir)
    results: list[Result] = field(default_factory=list)

    @property
    def workdir(self) -> str:
        return f"{cluster().facts.shared}/{self.name}"

    def sh(self, cmd: str, service: str | None = None, timeout: float = 900, user: str | None = None) -> Result:
        """Run a bash command in the workdir (as the lab user unless told); stdout+stderr merged."""
        res = node_sh(cmd, service, user, workdir=self.workdir, timeout=timeout)
        self.results.append(res)
        return res

    def spawn(self, cmd: str, service: str | None = None) -> Running:
        """Start a command in the workdir as the lab user and return at once
        (to watch the cluster while it runs); collect() waits for it."""
        return cluster().spawn(cmd, node=service, workdir=self.workdir)

    def collect(self, running: Running, timeout: float = 900) -> Result:
        res = running.wait(timeout)
        self.results.append(res)
        return res

    def snakemake(self, args: str, timeout: float = 900) -> Result:
        return self.sh(f"snakemake {args}", timeout=timeout)

    def reset(self) -> None:
        """A clean lab: the workflows and the profiles, nothing else."""
        def pycache(rel: str) -> bool:
            return "__pycache__" in rel
        r = cluster().put(self.workdir, [(ROOT / "lab/Snakefile", "Snakefile", None),
                                         (ROOT / "lab/scripts", "scripts", pycache),
                                         (ROOT / "lab/workflow", "workflow", pycache),
                                         (ROOT / "lab/pressure", "pressure", pycache),
                                         (ROOT / "profiles", "profiles", pycache)], fresh=True)
        if r.rc != 0:
            raise RuntimeError(f"could not lay out {self.workdir}: {r.out}")
        site = _top()[1]
        if site:
            for profile in sorted((ROOT / "profiles").glob("*/config.yaml")):
                rel = profile.relative_to(ROOT)
                text = site.profile(profile.read_text())
                w = cluster().sh(f"cat > {shlex.quote(str(rel))}", workdir=self.workdir, stdin=text.encode())
                if w.rc != 0:
                    raise RuntimeError(f"could not write {rel} in {self.workdir}: {w.out}")

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
        return proofs.write(self.proof_dir, name, *parts)


def sacct_jobs(lab: Lab, since: str, fields: str = "JobID,JobName,Comment,NodeList,State") -> list[dict[str, str]]:
    """Allocations (not steps) the lab user started from this lab (its working
    directory) since a `date +%FT%T` stamp: the user's other labs and runs may
    submit meanwhile, and their jobs are no evidence about this one's."""
    rows = cluster().sacct(since, (*fields.split(","), "WorkDir"))
    return [r for r in rows if r["WorkDir"] == lab.workdir]


def now_stamp(lab: Lab) -> str:
    return cluster().now()


def compute_nodes() -> list[str]:
    """The compute nodes of the running cluster (its facts)."""
    return list(cluster().facts.nodes)


def set_nfs_profile(*args: str) -> Result:
    """Switch the cluster's NFS-style client profile; returns once every node runs it."""
    return cluster().set_nfs_profile(*args)
