"""Wait until the cluster is ready for work, or say exactly what is not.

Ready means: every service's healthcheck passes, `sinfo` lists exactly the
expected compute nodes and all are idle, and `sacct` answers for the lab
user. `wait_healthy` asks less: only the named services' healthchecks (a
service back from a fault while jobs keep other nodes busy). On timeout, the
error names what is not ready, after the last lines of its log.

The polls ask Docker itself (`docker ps`, `docker exec`, through the one
local client, transport.containers): `docker compose` reads the project's
files on every call, about 0.12 s of CPU each, and these run every 2 s while
a cluster comes up or back. Each service's healthcheck
is run here, when asked, not read from Docker's last probe: Docker runs
most of them only every 30 s (each probe costs CPU for as long as the
cluster runs).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from minihpc.errors import MinihpcError
from minihpc.facts import LAB_USER, LOGIN, REST
from minihpc.transport import containers

BASE_SERVICES = ["db", "slurmdbd", "slurmctld", REST, LOGIN]
# Slurm states of a node that is not answering or not usable (sinfo %t; a
# trailing * means not responding). A drained node is up: a fault may drain it.
NOT_UP = ("down", "fail", "failg", "unk", "futr")
POLL_S = 2


def service_health(only: list[str] | None = None) -> dict[str, str]:
    """Map service (every one, or those in `only`) -> "healthy", or why not:
    each running container's own healthcheck (docker-compose.yml), run now
    rather than read from Docker, which runs most of them only every 30 s; a
    container that is not running, or has no healthcheck, by its state."""
    out = containers.ps('{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Names}}').stdout
    rows = [(line.split("\t") + ["", ""])[:3] for line in out.splitlines()]
    rows = [row for row in rows if only is None or row[0] in only]
    health = {service: state or "unknown" for service, state, _ in rows if service}
    running = {service: name for service, state, name in rows if service and state == "running"}
    r = containers.inspect("{{.Name}}\t{{json .Config.Healthcheck}}", *running.values()) if running else None
    checks = dict(line.lstrip("/").split("\t", 1) for line in (r.stdout if r else "").splitlines() if "\t" in line)
    with ThreadPoolExecutor(max(1, len(running))) as pool:
        said = pool.map(lambda s: run_healthcheck(s, json.loads(checks.get(running[s], "null"))), running)
        for service, result in zip(running, said, strict=True):
            health[service] = result or health[service]
    return health


def run_healthcheck(service: str, check: dict | None) -> str | None:
    """Run a service's healthcheck (Docker's Config.Healthcheck) now:
    "healthy", "not yet healthy: <what it said last>", or None without one."""
    test = (check or {}).get("Test") or ["NONE"]
    if test[0] not in ("CMD", "CMD-SHELL"):
        return None
    argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    limit = round((check.get("Timeout") or 30e9) / 1e9)
    # Ended in the container too (a check stuck on a wedged mount would
    # otherwise stay there, one more each poll), as Docker ends its own.
    done = containers.exec(service, "timeout", "-k", "1", str(limit), *argv, timeout=limit + 5)
    if done.returncode == 0:
        return "healthy"
    said = (done.stdout + done.stderr).strip().splitlines()
    return f"not yet healthy: {said[-1][:120]}" if said else f"not yet healthy: exit {done.returncode}"


def node_states() -> dict[str, str]:
    r = containers.exec(LOGIN, "sinfo", "-h", "-N", "-o", "%N %t")
    if r.returncode != 0:
        return {}
    return dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())


def sacct_answers(user: str) -> bool:
    return containers.exec(LOGIN, "sacct", "-n", "-X", "-S", "now-1hours", user=user).returncode == 0


def problems(nodes: list[str], user: str = LAB_USER) -> list[tuple[str, str]]:
    """(service, reason) pairs still standing between us and ready."""
    health = service_health()
    bad = [(s, health.get(s, "not created")) for s in BASE_SERVICES + nodes if health.get(s) != "healthy"]
    if bad:
        return bad
    states = node_states()
    if states != {n: "idle" for n in nodes}:
        extra = sorted(set(states) - set(nodes))
        bad = [(n, f"sinfo says {states.get(n, 'absent')}") for n in nodes if states.get(n) != "idle"]
        return bad + [("slurmctld", f"sinfo still lists removed node {n}") for n in extra]
    if not sacct_answers(user):
        return [("slurmdbd", f"sacct does not answer for {user}")]
    return []


def unhealthy(services: list[str]) -> list[tuple[str, str]]:
    """(service, reason) for each named service whose healthcheck fails, or,
    for a compute node, what sinfo says of it if it is not up (the node's own
    check asks for its state too; this names it)."""
    health = service_health(services)
    bad = [(s, health.get(s, "not created")) for s in services if health.get(s) != "healthy"]
    states = node_states() if not bad else {}
    return bad + [(n, f"sinfo says {st}") for n, st in states.items()
                  if n in services and (st.endswith("*") or st in NOT_UP)]


def _until(todo: Callable[[], list[tuple[str, str]]], timeout: float, fix: str) -> None:
    """Poll `todo` until it names nothing; print each new summary of what is
    still waited for; on timeout, show those services' last log lines and fail."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        left = todo()
        if not left:
            return
        summary = ", ".join(f"{s} ({why})" for s, why in left)
        if summary != last:
            print(f"waiting for: {summary}", flush=True)
            last = summary
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    for service in dict.fromkeys(s for s, _ in left):
        try:
            logs = containers.logs(service, tail=25)
        except MinihpcError as e:
            logs = str(e)
        print(f"--- last log lines of {service} ---\n{logs.rstrip() or '(no output)'}", file=sys.stderr)
    raise MinihpcError(f"not ready after {timeout:.0f} s: {summary}", fix)


def wait_ready(nodes: list[str], timeout: float, started: float, user: str = LAB_USER) -> None:
    """Return once the cluster of `nodes` is ready for work (see the module's doc)."""
    _until(lambda: problems(nodes, user), timeout,
           "raise the limit with minihpc up --timeout (READY_TIMEOUT), or look with minihpc status / minihpc logs")
    print(f"ready: {len(nodes)} idle nodes ({' '.join(nodes)}), sacct answers for {user}; "
          f"bring-up took {time.time() - started:.0f}s", flush=True)


def wait_healthy(services: list[str], timeout: float) -> None:
    """Return once every named service's healthcheck passes and Slurm sees each named node up."""
    started = time.time()
    _until(lambda: unhealthy(services), timeout, "see the log lines above; minihpc status shows every service")
    print(f"healthy: {' '.join(services)}; took {time.time() - started:.0f}s", flush=True)
