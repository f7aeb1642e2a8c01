"""How the cluster client reaches a node: one small interface, so that the
same proofs can later run on a real site over SSH. Only this module knows
that minihpc's nodes are Compose services entered with `docker compose exec`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from minihpc import ROOT


class Transport(Protocol):
    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        """The argv that runs `script` in a bash login shell on `node` as `user`
        (in `workdir` if given), with standard input passed through."""
        ...


class ComposeTransport:
    """The local cluster: `cluster/compose.sh exec` into the node's container."""

    def __init__(self, root: Path = ROOT) -> None:
        self.compose = str(root / "cluster/compose.sh")

    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        where = ["-w", workdir] if workdir else []
        return [self.compose, "exec", "-T", "-u", user, *where, node, "bash", "-lc", script]
