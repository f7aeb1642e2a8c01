"""How the cluster client reaches a node: one small interface, so that the
same proofs can later run on a real site over SSH. Only this module knows
that minihpc's nodes are Compose services entered with `docker compose exec`;
it is also the one place that runs Compose and docker on them (the CLI's
lifecycle verbs and the container faults call it)."""

from __future__ import annotations

import json
import subprocess
from typing import Protocol

from minihpc import ROOT
from minihpc.errors import MinihpcError

# `docker compose` with this cluster's files and run directory.
COMPOSE = str(ROOT / "cluster/compose.sh")


class Transport(Protocol):
    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        """The argv that runs `script` in a bash login shell on `node` as `user`
        (in `workdir` if given), with standard input passed through."""
        ...


class ComposeTransport:
    """The local cluster: `cluster/compose.sh exec` into the node's container."""

    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        where = ["-w", workdir] if workdir else []
        return [COMPOSE, "exec", "-T", "-u", user, *where, node, "bash", "-lc", script]


def _run(argv: list[str], what: str, timeout: float) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise MinihpcError(f"{what} failed: {r.stderr.strip()[-400:]}", "see minihpc status")
    return r.stdout


def compose(*args: str, timeout: float = 120) -> str:
    """`docker compose ARGS` on this cluster; its output, or an error with Compose's own message."""
    return _run([COMPOSE, *args], f"docker compose {' '.join(args)}", timeout)


def docker(*args: str, timeout: float = 120) -> str:
    return _run(["docker", *args], f"docker {' '.join(args)}", timeout)


def container(service: str) -> str:
    """The id of a service's container, running or not."""
    cid = compose("ps", "-q", "--all", service).strip()
    if not cid:
        raise MinihpcError(f"{service} has no container", "bring the cluster up first: minihpc up")
    return cid


def networks(cid: str) -> list[str]:
    """The networks a container is attached to (none once it is cut off)."""
    return list(json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", cid)))
