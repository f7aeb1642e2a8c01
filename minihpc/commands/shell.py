"""minihpc shell: a login shell on the login node as the lab user."""

from __future__ import annotations

import argparse

from minihpc import RUN_DIR
from minihpc.commands.common import exec_compose
from minihpc.facts import Facts


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shell", help="a login shell on the login node as the lab user")
    p.set_defaults(run=shell)


def shell(a: argparse.Namespace) -> int:
    f = Facts.read(RUN_DIR)
    exec_compose("exec", "-u", f.lab_user, "-w", f"/home/{f.lab_user}", f.login, "bash", "-l")
    return 0
