#!/usr/bin/env python3
"""Wait until the cluster is ready for work, or say exactly what is not.

Ready means: every service's healthcheck passes, `sinfo` lists exactly the
expected compute nodes and all are idle, and `sacct` answers for the lab user.
With --healthy, only the named services' healthchecks must pass (a service
back from a fault while jobs keep other nodes busy). On timeout, name what is
not ready and show the last lines of its log.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

COMPOSE = str(Path(__file__).resolve().parent / "compose.sh")
BASE_SERVICES = ["db", "slurmdbd", "slurmctld", "login"]


def compose(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMPOSE, *args], capture_output=True, text=True, timeout=timeout, check=False)


# The Compose project (docker-compose.yml's name). The polls below ask Docker
# itself: `docker compose` reads the project's files on every call, about
# 0.12 s of CPU each, and these run every 2 s while a cluster comes up or back.
PROJECT = "minihpc"


def docker(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def service_health() -> dict[str, str]:
    """Map service -> health (or state, for services without a healthcheck)."""
    out = docker("ps", "--all", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format",
                 '{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Status}}').stdout
    health = {}
    for line in out.splitlines():
        service, state, status = (line.split("\t") + ["", ""])[:3]
        for mark, h in (("(healthy)", "healthy"), ("(unhealthy)", "unhealthy"), ("(health: starting)", "starting")):
            if mark in status:
                state = h
        if service:
            health[service] = state or "unknown"
    return health


def on_login(*argv: str, user: str = "root") -> subprocess.CompletedProcess[str]:
    return docker("exec", "-u", user, f"{PROJECT}-login-1", *argv)


def node_states() -> dict[str, str]:
    r = on_login("sinfo", "-h", "-N", "-o", "%N %t")
    if r.returncode != 0:
        return {}
    return dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())


def sacct_answers(user: str) -> bool:
    return on_login("sacct", "-n", "-X", "-S", "now-1hours", user=user).returncode == 0


def problems(nodes: list[str], user: str) -> list[tuple[str, str]]:
    """(service, reason) pairs still standing between us and ready."""
    health = service_health()
    bad = [(s, health.get(s, "not created")) for s in BASE_SERVICES + nodes if health.get(s) != "healthy"]
    if bad:
        return bad
    states = node_states()
    want = {n: "idle" for n in nodes}
    if states != want:
        extra = sorted(set(states) - set(nodes))
        bad = [(n, f"sinfo says {states.get(n, 'absent')}") for n in nodes if states.get(n) != "idle"]
        return bad + [("slurmctld", f"sinfo still lists removed node {n}") for n in extra]
    if not sacct_answers(user):
        return [("slurmdbd", f"sacct does not answer for {user}")]
    return []


# Slurm states of a node that is not answering or not usable (sinfo %t; a
# trailing * means not responding). A drained node is up: a fault may drain it.
NOT_UP = ("down", "fail", "failg", "unk", "futr")


def unhealthy(services: list[str]) -> list[tuple[str, str]]:
    """(service, reason) for each named service whose healthcheck fails, or,
    for a compute node, whom Slurm does not see up yet: Docker's health lags a
    node cut off and reconnected by its retries."""
    health = service_health()
    bad = [(s, health.get(s, "not created")) for s in services if health.get(s) != "healthy"]
    states = node_states() if not bad else {}
    return bad + [(n, f"sinfo says {st}") for n, st in states.items()
                  if n in services and (st.endswith("*") or st in NOT_UP)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--user", default="student")
    ap.add_argument("--started", type=float, default=None, help="epoch seconds bring-up began")
    ap.add_argument("--healthy", action="store_true", help="wait only for these services' healthchecks")
    ap.add_argument("nodes", nargs="+")
    args = ap.parse_args(argv)
    t0 = args.started or time.time()
    deadline = time.time() + args.timeout
    last = None
    while True:
        if args.healthy:
            todo = unhealthy(args.nodes)
        else:
            todo = problems(args.nodes, args.user)
        if not todo:
            what = (f"healthy: {' '.join(args.nodes)}; took" if args.healthy else
                    f"ready: {len(args.nodes)} idle nodes ({' '.join(args.nodes)}), sacct answers for {args.user}; "
                    "bring-up took")
            print(f"{what} {time.time() - t0:.0f}s")
            return 0
        summary = ", ".join(f"{s} ({why})" for s, why in todo)
        if summary != last:
            print(f"waiting for: {summary}", flush=True)
            last = summary
        if time.time() >= deadline:
            break
        time.sleep(2)
    print(f"error: cluster not ready after {args.timeout:.0f}s; not ready: {summary}", file=sys.stderr)
    for service in dict.fromkeys(s for s, _ in todo):
        logs = compose("logs", "--no-color", "--tail", "25", service).stdout
        print(f"--- last log lines of {service} ---\n{logs.rstrip() or '(no output)'}", file=sys.stderr)
    print("hint: raise the limit with READY_TIMEOUT=<seconds>, or inspect with minihpc status / minihpc logs",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
