"""lab, confirm, core, demo: the course module's cores and instructor demos,
run through SLURM with proofs in .proof/."""

from __future__ import annotations

import argparse

from minihpc.errors import BadInput

CORE_NAMES = {"1": "core1", "2": "core2", "3-latency": "core3-latency", "3-staging": "core3-staging",
              "4": "core4", "5": "core5", "6": "core6"}


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="the module's commissioning sequence as printed (profiles/slurm), then the fix")
    p.set_defaults(run=lambda a: _run([], commissioning=True))
    p = sub.add_parser("confirm", help="every core from a clean lab; pass/fail table; proofs in .proof/")
    p.set_defaults(run=lambda a: _run([]))
    p = sub.add_parser("core", help="one course core (see lab/GUIDE.md)")
    p.add_argument("n", metavar="N", help=f"one of {', '.join(CORE_NAMES)}")
    p.set_defaults(run=core)
    p = sub.add_parser("demo", help="an instructor demo: one real failure, its signature and the fix")
    p.add_argument("name", nargs="?", metavar="NAME", help="a demo (e.g. scratch-full); --all for every one")
    p.add_argument("--all", action="store_true", help="every demo, with a pass/fail table")
    p.set_defaults(run=demo)


def _run(names: list[str], commissioning: bool = False) -> int:
    from minihpc.course.confirm import run
    return run(names, commissioning_only=commissioning)


def core(a: argparse.Namespace) -> int:
    if a.n not in CORE_NAMES:
        raise BadInput(f"no core {a.n!r}", f"choose one of {', '.join(CORE_NAMES)}")
    return _run([CORE_NAMES[a.n]])


def demo(a: argparse.Namespace) -> int:
    from minihpc.course.demos import DEMOS
    names = [n.removeprefix("demo-") for n in DEMOS]
    if a.all:
        return _run(list(DEMOS))
    if a.name is None or a.name.removeprefix("demo-") not in names:
        raise BadInput(f"no demo {a.name!r}" if a.name else "name a demo", f"choose one of {', '.join(names)} "
                       "(or --all)")
    return _run([f"demo-{a.name.removeprefix('demo-')}"])
