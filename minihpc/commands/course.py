"""lab, confirm, core, demo: the course module's cores and instructor demos,
run through SLURM with proofs in .proof/."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from minihpc.errors import BadInput

if TYPE_CHECKING:  # the cluster client is imported when a verb runs
    from minihpc.cluster import Cluster

CORE_NAMES = {"1": "core1", "2": "core2", "3-latency": "core3-latency", "3-staging": "core3-staging",
              "4": "core4", "5": "core5", "6": "core6"}


def add(sub: argparse._SubParsersAction) -> None:
    busy = {"action": "store_true", "help": "run under another user's higher-priority load that holds every CPU "
                                            "but one (minihpc busy), and prove the load was there"}
    p = sub.add_parser("lab", help="the module's commissioning sequence as printed (profiles/slurm), then the fix")
    p.add_argument("--busy", **busy)
    p.set_defaults(run=lambda a: _run([], commissioning=True, busy=a.busy))
    p = sub.add_parser("confirm", help="every core from a clean lab; pass/fail table; proofs in .proof/")
    p.add_argument("--busy", **busy)
    p.set_defaults(run=lambda a: _run([], busy=a.busy))
    p = sub.add_parser("core", help="course cores by number (see lab/GUIDE.md)")
    p.add_argument("n", nargs="+", metavar="N", help=f"one or more of {', '.join(CORE_NAMES)}")
    p.add_argument("--busy", **busy)
    p.set_defaults(run=core)
    p = sub.add_parser("demo", help="an instructor demo: one real failure, its signature and the fix")
    p.add_argument("name", nargs="?", metavar="NAME", help="a demo (e.g. scratch-full); --all for every one")
    p.add_argument("--all", action="store_true", help="every demo, with a pass/fail table")
    p.set_defaults(run=demo)
    p = sub.add_parser("pressure", help="the pressure workflow: hundreds of short jobs through SLURM, with proofs",
                       description="Run lab/pressure (200 one-second parts, a fan-in on the login node) through "
                                   "profiles/slurm while sampling the queue: proofs that the cluster was full, that "
                                   "jobs pended for Resources and Priority, that every job COMPLETED and the "
                                   "fan-in's sum is right; .proof/pressure.txt and, with matplotlib, its timeline.")
    p.add_argument("--grouped", action="store_true", help="10 parts per SLURM job (--groups, --cores 1)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="parts of the fan-out (default 200; more than the cluster's CPUs)")
    p.set_defaults(run=pressure)


def _run(names: list, commissioning: bool = False, busy: bool = False, client: Cluster | None = None) -> int:
    """Run them on this machine's cluster (`minihpc up`): one client, handed to every core and demo."""
    from minihpc.cluster import Cluster
    from minihpc.course.confirm import run
    return run(client or Cluster.local(), names, commissioning_only=commissioning, busy=busy)


def pressure(a: argparse.Namespace) -> int:
    from minihpc.cluster import Cluster
    from minihpc.course import pressure as p
    jobs = p.JOBS if a.jobs is None else a.jobs
    client = Cluster.local()
    capacity = client.facts.total_cpus
    if not capacity < jobs <= p.MAX_JOBS:
        raise BadInput(f"--jobs {jobs} does not put the cluster under pressure",
                       f"give more parts than its {capacity} CPUs, and at most {p.MAX_JOBS}")

    def pressure(labs: p.Labs) -> p.Proof:
        return p.pressure(labs, grouped=a.grouped, jobs=jobs)
    return _run([pressure], client=client)


def core(a: argparse.Namespace) -> int:
    for n in a.n:
        if n not in CORE_NAMES:
            raise BadInput(f"no core {n!r}", f"choose one of {', '.join(CORE_NAMES)}")
    return _run([CORE_NAMES[n] for n in a.n], busy=a.busy)


def demo(a: argparse.Namespace) -> int:
    from minihpc.course.demos import DEMOS
    names = [n.removeprefix("demo-") for n in DEMOS]
    if a.all:
        return _run(list(DEMOS))
    if a.name is None or a.name.removeprefix("demo-") not in names:
        raise BadInput(f"no demo {a.name!r}" if a.name else "name a demo", f"choose one of {', '.join(names)} "
                       "(or --all)")
    return _run([f"demo-{a.name.removeprefix('demo-')}"])
