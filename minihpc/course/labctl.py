"""Drive the lab on a cluster, as the lab user, on the shared filesystem.

One place that knows how to lay a fresh lab out on /shared, run commands in it
on the login node, and keep their output as proof artifacts under .proof/.
The cluster is a client given to it (Labs): this machine's (`minihpc up`), or
a site's over SSH (`minihpc site check`). Used by `make lab`, `make core*`,
`make confirm`, the site check and the cluster tests.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from minihpc import PROOF_DIR, ROOT, proofs
from minihpc.cluster import Cluster, Result, Running
from minihpc.facts import LAB_ACCOUNT, LAB_USER
from minihpc.sitefile import Site

__all__ = ["LAB_USER", "Lab", "Labs", "Result", "Running", "now_stamp", "sacct_jobs"]


def course_files() -> list[tuple[Path, str, Callable[[str], bool] | None]]:
    """A lab's files, as Cluster.put takes them: the workflows and the profiles, nothing else."""
    def pycache(rel: str) -> bool:
        return "__pycache__" in rel
    return [(ROOT / "lab/Snakefile", "Snakefile", None), (ROOT / "lab/scripts", "scripts", pycache),
            (ROOT / "lab/workflow", "workflow", pycache), (ROOT / "lab/pressure", "pressure", pycache),
            (ROOT / "profiles", "profiles", pycache)]


@dataclass(frozen=True)
class Labs:
    """Where labs are laid out and run: a cluster client (this machine's
    cluster, or a site's), the site when it is one (minihpc's profiles are
    then made for it: Site.profile; on another cluster they are used as they
    are), and the directory the labs' proofs go to."""

    client: Cluster
    site: Site | None = None
    proof_dir: Path = PROOF_DIR
    # Where the labs' directories are: the shared filesystem's top (the lab
    # user's), or a directory of the user's own (a learner's, minihpc class check).
    workroot: str | None = None

    def lab(self, name: str) -> Lab:
        return Lab(self, name)


@dataclass
class Lab:
    """A lab working directory on the shared filesystem."""

    labs: Labs
    name: str
    results: list[Result] = field(default_factory=list)

    @property
    def client(self) -> Cluster:
        return self.labs.client

    @property
    def proof_dir(self) -> Path:
        return self.labs.proof_dir

    @property
    def workdir(self) -> str:
        return f"{self.labs.workroot or self.client.facts.shared}/{self.name}"

    def sh(self, cmd: str, service: str | None = None, timeout: float = 900, user: str | None = None) -> Result:
        """Run a bash command in the workdir (as the lab user unless told); stdout+stderr merged."""
        res = self.client.sh(cmd, node=service, user=user, workdir=self.workdir, timeout=timeout)
        self.results.append(res)
        return res

    def spawn(self, cmd: str, service: str | None = None) -> Running:
        """Start a command in the workdir as the lab user and return at once
        (to watch the cluster while it runs); collect() waits for it."""
        return self.client.spawn(cmd, node=service, workdir=self.workdir)

    def collect(self, running: Running, timeout: float = 900) -> Result:
        res = running.wait(timeout)
        self.results.append(res)
        return res

    def snakemake(self, args: str, timeout: float = 900) -> Result:
        return self.sh(f"snakemake {args}", timeout=timeout)

    def reset(self) -> None:
        """A clean lab: the workflows and the profiles, nothing else; the
        profiles made for the site, or for a user of another account (a learner's)."""
        r = self.client.put(self.workdir, course_files(), fresh=True)
        if r.rc != 0:
            raise RuntimeError(f"could not lay out {self.workdir}: {r.out}")
        site, account = self.labs.site, self.client.facts.lab_account
        if site or account != LAB_ACCOUNT:
            for profile in sorted((ROOT / "profiles").glob("*/config.yaml")):
                rel = profile.relative_to(ROOT)
                text = site.profile(profile.read_text()) if site else re.sub(
                    r"^(\s+slurm_account:) .*$", rf"\g<1> {account}", profile.read_text(), flags=re.M)
                w = self.client.sh(f"cat > {shlex.quote(str(rel))}", workdir=self.workdir, stdin=text.encode())
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
    rows = lab.client.sacct(since, (*fields.split(","), "WorkDir"))
    return [r for r in rows if r["WorkDir"] == lab.workdir]


def now_stamp(lab: Lab) -> str:
    return lab.client.now()
