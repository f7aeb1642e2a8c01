"""fault: break the cluster on purpose, one fault per command, and undo it (minihpc.faults)."""

from __future__ import annotations

import argparse

from minihpc.faults import DRAIN_REASON, FAULTS, SIGNALS


def add(sub: argparse._SubParsersAction) -> None:
    lines = [f"  {f.name:<15} {f.does}" + (f" (undo: {f.undo})" if f.undo else "") for f in FAULTS.values()]
    p = sub.add_parser(
        "fault", help="inject a fault (kill a node, restart a daemon, cut the network, NFS EIO ...) or undo one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Break the running cluster the way real ones break, one fault per command; each is undone "
                    "by another command (or undoes itself) and returns once the cluster is in the new state.\n\n"
                    + "\n".join(lines),
        epilog="examples:\n  minihpc fault kill c1 && minihpc fault start c1\n  minihpc fault restart slurmctld\n"
               "  minihpc fault nfs-eio '/shared/lab/results/*' --count 1\n"
               "SERVICE is db, slurmdbd, slurmctld, login or a compute node; NODE a compute node.")
    p.add_argument("fault", metavar="FAULT", help=f"one of: {', '.join(FAULTS)}")
    p.add_argument("target", nargs="?", metavar="SERVICE|NODE|PATH", help="what the fault acts on")
    p.add_argument("--reason", help=f"drain: the reason sinfo shows (default {DRAIN_REASON!r})")
    p.add_argument("--signal", default="INT", choices=SIGNALS,
                   help="stop-snakemake: INT (Ctrl-C: Snakemake cancels its jobs), TERM, or KILL "
                        "(a lost login session: jobs keep running)")
    p.add_argument("--ops", default="write|create", metavar="OPS",
                   help="nfs-eio: the client operations that fail, joined by | (default write|create)")
    p.add_argument("--count", type=int, help="nfs-eio: fail only the first N matching operations per node")
    p.set_defaults(run=run)


def run(a: argparse.Namespace) -> int:
    from minihpc.cluster import Cluster
    from minihpc.errors import BadInput
    from minihpc.faults import Faults
    if a.fault not in FAULTS:
        raise BadInput(f"no fault {a.fault!r}", f"choose one of {', '.join(FAULTS)} (minihpc fault --help)")
    print(Faults(Cluster.local()).apply(a.fault, a.target, reason=a.reason, signal=a.signal, ops=a.ops,
                                         count=a.count))
    return 0
