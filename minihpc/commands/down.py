"""minihpc down: stop the cluster, keeping its data and secrets."""

from __future__ import annotations

import argparse

from minihpc import NODES_FILE, RUN_DIR
from minihpc.commands.common import compose


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("down", help="stop the cluster; keep its data and secrets")
    p.set_defaults(run=down)


def down(a: argparse.Namespace) -> int:
    if not NODES_FILE.exists():
        print(f"down: no cluster state in {RUN_DIR} (nothing to stop)")
        return 0
    return compose("down", "--remove-orphans")
