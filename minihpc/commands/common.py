"""Helpers the verbs share: Compose, environment knobs, confirmations."""

from __future__ import annotations

import sys
from typing import NoReturn

from minihpc import NODES_FILE, RUN_DIR
from minihpc.errors import BadInput, MinihpcError
from minihpc.transport import containers


def require_state() -> None:
    if not NODES_FILE.exists():
        raise MinihpcError(f"no cluster state in {RUN_DIR}", "bring a cluster up first: minihpc up")


def compose(*args: str, check: bool = True) -> int:
    """`docker compose ARGS` on the cluster there is, its output passed through."""
    require_state()
    return containers.compose_shown(*args, check=check)


def exec_compose(*args: str) -> NoReturn:
    """Become `docker compose ARGS` on the cluster there is (interactive verbs)."""
    require_state()
    containers.compose_replace(*args)


def confirm(question: str, yes: bool) -> None:
    """Ask before something that loses data; refuse without a terminal unless --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadInput(f"{question} needs confirmation and there is no terminal to ask", "pass --yes (make: YES=1)")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise MinihpcError("not confirmed", "nothing was changed")
