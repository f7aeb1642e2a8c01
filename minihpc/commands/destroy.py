"""minihpc destroy: remove the cluster's containers, volumes and secrets; asks first."""

from __future__ import annotations

import argparse
import shutil

from minihpc import NODES_FILE, RUN_DIR
from minihpc.commands.common import compose, confirm


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("destroy", help="remove containers, volumes and secrets (images are kept)")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.set_defaults(run=destroy)


def destroy(a: argparse.Namespace) -> int:
    confirm("remove the cluster's containers, volumes (accounting database, shared files) and secrets?", a.yes)
    if NODES_FILE.exists():
        compose("down", "--remove-orphans", "--volumes")
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    print(f"destroyed: containers, volumes and {RUN_DIR} removed (images kept)")
    return 0
