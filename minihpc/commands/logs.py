"""minihpc logs: the services' logs, followed or printed once."""

from __future__ import annotations

import argparse

from minihpc.commands.common import exec_compose


def _tail(raw: str) -> str:
    if raw != "all" and not raw.isdigit():
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of lines or all")
    return raw


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="follow the services' logs (or print them once: --no-follow)")
    p.add_argument("service", nargs="?", help="one service (e.g. slurmctld, c1); default all")
    p.add_argument("--tail", type=_tail, default="50", metavar="N", help="lines of each log to start from, or all "
                                                                         "(default 50)")
    p.add_argument("--no-follow", action="store_true", help="print what there is and return")
    p.add_argument("--timestamps", action="store_true", help="each line with the time Docker received it")
    p.set_defaults(run=logs)


def logs(a: argparse.Namespace) -> int:
    exec_compose("logs", *(["--no-color"] if a.no_follow else ["-f"]), "--tail", a.tail,
                 *(["--timestamps"] if a.timestamps else []), *([a.service] if a.service else []))
    return 0
