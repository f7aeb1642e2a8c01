"""Helpers for tests of the NFS client mounted on this host as two nodes, A and
B, over one backing directory, laid out as on a cluster node (nfs.localmount)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from nfs.localmount import LocalCluster
from nfs.profiles import Profile

LAB_UID = 1000


@dataclass
class Mounts:
    lc: LocalCluster

    @property
    def a(self) -> Path:
        return self.lc.mnt("A")

    @property
    def b(self) -> Path:
        return self.lc.mnt("B")

    @property
    def backing(self) -> Path:
        return self.lc.backing

    def set(self, profile: Profile) -> None:
        self.lc.set(profile)

    def stats(self, node: str) -> dict:
        return self.lc.stats(node)


def as_lab_user(script: str, env: dict[str, str] | None = None, groups: tuple[int, ...] = (),
                timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell script as uid/gid 1000 (the lab user's ids on the cluster),
    with no supplementary groups but `groups`; `env` adds variables."""
    ids = ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", f"--reuid={LAB_UID}", f"--regid={LAB_UID}", *ids, "sh", "-c", script],
                          capture_output=True, text=True, check=False, cwd="/", timeout=timeout,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", **(env or {})})


