"""minihpc logs: follow the services' logs."""

from __future__ import annotations

import argparse

from minihpc.commands.common import exec_compose


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="follow the services' logs")
    p.add_argument("service", nargs="?", help="one service (e.g. slurmctld, c1); default all")
    p.set_defaults(run=logs)


def logs(a: argparse.Namespace) -> int:
    exec_compose("logs", "-f", "--tail", "50", *([a.service] if a.service else []))
    return 0
