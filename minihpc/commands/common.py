"""Helpers the verbs share: Compose, environment knobs, confirmations."""

from __future__ import annotations

import os
import sys

from minihpc import RUN_DIR
from minihpc.errors import BadInput, MinihpcError
from minihpc.transport import COMPOSE, compose_shown


def require_state() -> None:
    if not (RUN_DIR / "compose.nodes.yml").exists():
        raise MinihpcError(f"no cluster state in {RUN_DIR}", "bring a cluster up first: minihpc up")


def compose(*args: str, check: bool = True) -> int:
    """Run `docker compose` on this cluster (cluster/compose.sh), output passed through."""
    require_state()
    rc = compose_shown(*args)
    if check and rc != 0:
        raise MinihpcError(f"docker compose {args[0]} failed with exit {rc}", "see its output above")
    return rc


def exec_compose(*args: str) -> None:
    """Replace this process with `docker compose ARGS` (interactive verbs)."""
    require_state()
    os.execv(COMPOSE[0], [*COMPOSE, *args])


def confirm(question: str, yes: bool) -> None:
    """Ask before something that loses data; refuse without a terminal unless --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadInput(f"{question} needs confirmation and there is no terminal to ask", "pass --yes (make: YES=1)")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise MinihpcError("not confirmed", "nothing was changed")
