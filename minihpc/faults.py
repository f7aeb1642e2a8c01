"""Faults an instructor shows and the tests recover from: each one command,
each undone by another (kill/stop by start, drain by resume, cut by reconnect,
nfs-eio by nfs-clear); restart and reboot undo themselves.

The container faults (kill, stop, start, restart, cut, reconnect) act through
the transport's Compose and docker calls (minihpc.transport), the Slurm and
NFS ones through the cluster client. Every target is checked against the
cluster's facts before anything is touched.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from minihpc import NAME, ROOT, ready
from minihpc.cluster import Cluster, Result
from minihpc.errors import BadInput, MinihpcError
from minihpc.facts import Facts
from minihpc.transport import containers

# How long a service may take to be healthy again after start, restart or reboot.
RECOVERY_TIMEOUT = 240
# The drain reason, unless one is given: sinfo -R shows it.
DRAIN_REASON = "minihpc fault drain"
SIGNALS = ("INT", "TERM", "KILL")
# The login node's Snakemake main processes (not the job steps on compute nodes).
SNAKEMAKE = "bin/snakemake( |$)"


@dataclass(frozen=True)
class Fault:
    name: str
    target: str  # what it acts on: service, node, path or nothing
    does: str
    undo: str


FAULTS = {f.name: f for f in (
    Fault("kill", "service", "kill a service's container at once (SIGKILL, as a power cut); it stays down",
          "start"),
    Fault("stop", "service", "stop a service's container cleanly; it stays down", "start"),
    Fault("start", "service", "start a killed or stopped service and wait until it is healthy", ""),
    Fault("restart", "service", "restart a service's container and wait until it is healthy", ""),
    Fault("drain", "node", "drain a compute node in Slurm: running jobs finish, no new ones start", "resume"),
    Fault("resume", "node", "return a drained compute node to service", ""),
    Fault("cut", "node", "cut a compute node off the cluster's network", "reconnect"),
    Fault("reconnect", "node", "reconnect a cut compute node and wait until it is healthy", ""),
    Fault("stop-snakemake", "", "signal every Snakemake running on the login node (INT as Ctrl-C does)", ""),
    Fault("nfs-eio", "path", "make the shared filesystem fail writes to PATH with EIO, on every node",
          "nfs-clear"),
    Fault("nfs-clear", "", "drop the shared filesystem's fault rules (the active profile stays)", ""),
    Fault("reboot", "", "restart the Docker engine, as a host reboot does; wait until every service is healthy",
          ""),
)}


def targets(facts: Facts, kind: str) -> list[str]:
    """What a fault of this kind may name on this cluster."""
    return {"service": ["db", *facts.daemons, facts.login, *facts.nodes], "node": list(facts.nodes)}.get(kind, [])


def check_target(facts: Facts, fault: Fault, target: str | None) -> None:
    """Refuse a missing or unknown target before anything is touched."""
    allowed = targets(facts, fault.target)
    if fault.target in ("service", "node"):
        if not target:
            raise BadInput(f"fault {fault.name} needs a {fault.target}",
                           f"name one of {', '.join(allowed)}, e.g. minihpc fault {fault.name} {allowed[-1]}")
        if target not in allowed:
            raise BadInput(f"{target!r} is not a {fault.target} of this cluster (it has {', '.join(allowed)})",
                           f"name one of them, e.g. minihpc fault {fault.name} {allowed[-1]}")
    elif fault.target == "path":
        if not target or not target.startswith(facts.shared + "/") or ".." in target.split("/"):
            raise BadInput(f"fault {fault.name} needs a path under {facts.shared}, got {target!r}",
                           f"e.g. minihpc fault {fault.name} '{facts.shared}/lab/results/*'")
    elif target:
        raise BadInput(f"fault {fault.name} takes no target, got {target!r}", f"run: minihpc fault {fault.name}")


def wait_healthy(services: list[str], timeout: float = RECOVERY_TIMEOUT) -> None:
    """Return once every service's healthcheck passes (minihpc.ready)."""
    ready.wait_healthy(services, timeout)


class Faults:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.facts = cluster, cluster.facts

    def apply(self, name: str, target: str | None = None, *, reason: str | None = None, signal: str = "INT",
              ops: str = "write|create", count: int | None = None) -> str:
        """Apply fault `name`; returns what it did, one line."""
        if name not in FAULTS:
            raise BadInput(f"no fault {name!r}", f"choose one of {', '.join(FAULTS)} (minihpc fault --help)")
        fault = FAULTS[name]
        check_target(self.facts, fault, target)
        if signal not in SIGNALS:
            raise BadInput(f"--signal {signal} is not one of {', '.join(SIGNALS)}", "e.g. --signal INT")
        if count is not None and count < 1:
            raise BadInput(f"--count {count} must be at least 1", "leave it out to fail every write")
        act: dict[str, Callable[[], str]] = {
            "kill": lambda: self._container("kill", target, "-s", "KILL"),
            "stop": lambda: self._container("stop", target),
            "start": lambda: self._start(target),
            "restart": lambda: self._restart(target),
            "drain": lambda: self._drain(target, reason or DRAIN_REASON),
            "resume": lambda: self._resume(target),
            "cut": lambda: self._cut(target),
            "reconnect": lambda: self._reconnect(target),
            "stop-snakemake": lambda: self._stop_snakemake(signal),
            "nfs-eio": lambda: self._nfs_eio(target, ops, count),
            "nfs-clear": self._nfs_clear,
            "reboot": self._reboot,
        }
        return act[name]()

    # -- containers ------------------------------------------------------------

    def _container(self, verb: str, service: str, *args: str) -> str:
        containers.compose(verb, *args, service)
        done = {"kill": "killed", "stop": "stopped"}[verb]
        return f"{service}: {done}; undo with minihpc fault start {service}"

    def _start(self, service: str) -> str:
        t0 = time.monotonic()
        containers.compose("start", service)
        wait_healthy([service])
        return f"{service}: started and healthy in {time.monotonic() - t0:.0f} s"

    def _restart(self, service: str) -> str:
        t0 = time.monotonic()
        containers.compose("restart", service)
        wait_healthy([service])
        return f"{service}: restarted and healthy in {time.monotonic() - t0:.0f} s"

    def _cut(self, node: str) -> str:
        cid = containers.id(node)
        nets = containers.networks(cid)
        if not nets:
            raise MinihpcError(f"{node} is already cut off", f"reconnect it: minihpc fault reconnect {node}")
        for net in nets:
            containers.docker("network", "disconnect", net, cid)
        return f"{node}: cut off ({', '.join(nets)}); undo with minihpc fault reconnect {node}"

    def _reconnect(self, node: str) -> str:
        cid = containers.id(node)
        if containers.networks(cid):
            raise MinihpcError(f"{node} is not cut off", "nothing to reconnect")
        # The network every other node is on; the node's name must resolve there again.
        net = containers.networks(containers.id(self.facts.login))[0]
        t0 = time.monotonic()
        # At its own address: Docker would hand it any free one, perhaps a killed node's, where slurmctld
        # would then send that node's jobs.
        if node not in self.facts.addresses:
            raise MinihpcError(f"the cluster's facts give no address for {node} (made by a minihpc before fixed "
                               "addresses)", "minihpc down, then minihpc up (data and secrets are kept)")
        containers.docker("network", "connect", "--ip", self.facts.addresses[node], "--alias", node, net, cid)
        wait_healthy([node])
        return f"{node}: reconnected to {net} and healthy in {time.monotonic() - t0:.0f} s"

    def _reboot(self) -> str:
        # The engine is every cluster's: restarting it would stop the others' jobs too.
        others = [n for n in containers.clusters(stopped=False) if n != NAME]
        if others:
            raise MinihpcError(f"reboot restarts the Docker engine, and other minihpc clusters run on it: "
                               f"{', '.join(others)}", "stop them first (MINIHPC_CLUSTER=NAME minihpc down), "
                               "or show another fault")
        t0 = time.monotonic()
        r = subprocess.run([str(ROOT / "cluster/bootstrap-host.sh"), "--restart-engine"], check=False,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise MinihpcError("the docker engine did not restart", "see the bootstrap lines above")
        wait_healthy(targets(self.facts, "service"))
        return f"engine restarted; every service healthy again in {time.monotonic() - t0:.0f} s"

    # -- Slurm -----------------------------------------------------------------

    def _root(self, script: str) -> Result:
        r = self.cluster.root(script, node=self.facts.login, timeout=60)
        if r.rc != 0:
            raise MinihpcError(f"{script} failed: {r.out.strip()[-400:]}", "see minihpc status")
        return r

    def _drain(self, node: str, reason: str) -> str:
        self._root(f"scontrol update nodename={node} state=drain reason={shlex.quote(reason)}")
        return f"{node}: draining ({reason}); undo with minihpc fault resume {node}"

    def mark_down(self, node: str, reason: str) -> str:
        """Set a dead node DOWN now, as a site's node health check would, rather
        than wait SlurmdTimeout for slurmctld to notice: its jobs end NODE_FAIL
        either way, and it returns to service when its slurmd registers
        (ReturnToService=2)."""
        self._root(f"scontrol update nodename={node} state=down reason={shlex.quote(reason)}")
        return f"{node}: marked down ({reason})"

    def _resume(self, node: str) -> str:
        self._root(f"scontrol update nodename={node} state=resume")
        return f"{node}: resumed"

    def _stop_snakemake(self, signal: str) -> str:
        found = self._root(f"pgrep -a -f {shlex.quote(SNAKEMAKE)} || true").out.strip()
        if not found:
            raise MinihpcError(f"no Snakemake runs on {self.facts.login}", "start a workflow first")
        pids = [line.split()[0] for line in found.splitlines()]
        self._root(f"kill -{signal} {' '.join(pids)}")
        return f"{self.facts.login}: sent SIG{signal} to Snakemake (pid {', '.join(pids)})"

    # -- the shared filesystem -------------------------------------------------

    def active_nfs_profile(self) -> str:
        """The name of the profile the shared filesystem runs (its overrides aside)."""
        first = self._root("minihpc-nfs show").out.splitlines()[0]  # "profile: NAME (digest)"
        return first.split()[1]

    def _nfs_eio(self, path: str, ops: str, count: int | None) -> str:
        from nfs.faults import FaultError, FaultRule
        rel = self.facts.on_mount(path)
        spec = f"EIO:op={ops},path={rel}," + (f"count={count}" if count else "probability=1")
        try:
            FaultRule.parse(spec)
        except FaultError as e:
            raise BadInput(str(e), "see minihpc fault --help") from None
        profile = self.active_nfs_profile()
        self.cluster.set_nfs_profile(profile, "--fault", spec)
        return f"shared filesystem: {ops} on {path} fail with EIO on every node; undo with minihpc fault nfs-clear"

    def _nfs_clear(self) -> str:
        profile = self.active_nfs_profile()
        self.cluster.set_nfs_profile(profile)
        return f"shared filesystem: fault rules dropped (profile {profile})"
