"""Mount the NFS-style client on this host, outside the cluster: one backing
directory seen as several nodes. Used by the integration tests and the
benchmark; the cluster's nodes mount through cluster/entrypoint.sh instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nfs.profiles import Profile, write_active

ROOT = Path(__file__).resolve().parent.parent
# A quiet user's work beside a noisy one (python -c, argument: a directory):
# create, stat, unlink one file at a time until a line arrives on standard
# input; prints the latencies (ms) of each round, then every error. The
# benchmark's noisy-neighbour row and the integration tests run the same.
QUIET_USER = """
import os, select, sys, time
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
lat, errors, i = [], [], 0
while not select.select([sys.stdin], [], [], 0)[0]:
    p = f"{d}/f{i % 50}"
    t = time.perf_counter()
    try:
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        os.stat(p)
        os.unlink(p)
    except OSError as e:
        errors.append(f"{e.strerror}: {p}")
    lat.append((time.perf_counter() - t) * 1000)
    i += 1
    time.sleep(0.002)
print(" ".join(f"{x:.3f}" for x in lat))
print("|".join(errors[:20]))
"""


class LocalCluster:
    """Laid out as on a node: `root/server` (0700, the server's side) holds the
    export and the control file, `root/run` (0700) the clients' statistics, and
    `root/<node>` is each node's mount, the only part users can reach."""

    def __init__(self, root: Path, nodes: tuple[str, ...], client_args: tuple[str, ...] = ()) -> None:
        self.root, self.nodes, self.client_args = root, nodes, client_args
        self.server = root / "server"
        self.backing = self.server / "export"
        self.control = self.server / "control/profile.json"
        self.run = root / "run"
        self.procs: dict[str, subprocess.Popen] = {}

    def mnt(self, node: str) -> Path:
        return self.root / node

    def stats(self, node: str) -> dict:
        try:
            return json.loads(self.stats_path(node).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def log_path(self, node: str) -> Path:
        return self.run / f"client.{node}.log"

    def log(self, node: str) -> str:
        """What the client said on stderr (its warnings and any traceback)."""
        return self.log_path(node).read_text(errors="replace")

    def stats_path(self, node: str) -> Path:
        return self.run / f"stats.{node}.json"

    def set(self, profile: Profile, timeout: float = 10) -> None:
        """Switch the profile at runtime; returns once every client runs it."""
        write_active(self.control, profile)
        deadline = time.monotonic() + timeout
        while not all(self.stats(n).get("digest") == profile.digest for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"clients did not switch to {profile.name}: {[self.stats(n) for n in self.nodes]}")
            time.sleep(0.1)

    def wait_stats(self, node: str) -> dict:
        """Counters written after now (the client writes them every second)."""
        path = self.stats_path(node)
        before = path.stat().st_mtime_ns
        deadline = time.monotonic() + 5
        while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.stats(node)

    def _mount(self, node: str) -> None:
        mnt = self.mnt(node)
        mnt.mkdir()
        log = open(self.log_path(node), "w")  # noqa: SIM115 (the client's for its lifetime)
        proc = subprocess.Popen(
            [sys.executable, "-m", "nfs.client", "--backing", str(self.backing), "--mountpoint", str(mnt),
             "--control", str(self.control), "--node", node, "--stats", str(self.stats_path(node)),
             *self.client_args],
            cwd=ROOT, stderr=log)
        log.close()
        self.procs[node] = proc
        deadline = time.monotonic() + 15
        while not os.path.ismount(mnt):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"nfs.client {node} did not mount {mnt}: {self.log(node)[-2000:]}")
            time.sleep(0.05)

    def unmount(self) -> None:
        for node in self.procs:
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt(node))], check=False)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def local_cluster(root: Path, profile: Profile, nodes: tuple[str, ...] = ("A", "B"),
                  client_args: tuple[str, ...] = ()) -> Iterator[LocalCluster]:
    """`client_args`: more options for every node's nfs.client (e.g. --workers 0)."""
    root.chmod(0o755)
    lc = LocalCluster(root, nodes, client_args)
    for d, mode in ((lc.server, 0o700), (lc.backing, 0o1777), (lc.run, 0o700)):
        d.mkdir()
        d.chmod(mode)
    write_active(lc.control, profile)
    try:
        for node in nodes:
            lc._mount(node)
        lc.set(profile)
        yield lc
    finally:
        lc.unmount()
