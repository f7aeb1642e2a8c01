"""scratch: each node's private /scratch, inspected (and emptied) from the host.

What a job staged on a node's scratch is visible there and nowhere else, so
the evidence comes from each node's own filesystem, read as root."""

from __future__ import annotations

import argparse

from minihpc.cluster import Cluster
from minihpc.errors import BadInput

LIMIT = 40  # files listed per node


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scratch", help="each node's /scratch: size, use and files",
                       description="Show each node's private scratch; --clean empties it first, as a site's "
                                   "epilog would (refused while any job is queued or running).")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="nodes (default: login and every compute node)")
    p.add_argument("--clean", action="store_true", help="empty the nodes' scratch first")
    p.set_defaults(run=scratch)


def scratch(a: argparse.Namespace) -> int:
    c = Cluster.local()
    known = c.facts.client_nodes
    unknown = [n for n in a.nodes if n not in known]
    if unknown:
        raise BadInput(f"no node {', '.join(unknown)}", f"this cluster has {' '.join(known)}")
    nodes = a.nodes or known
    if a.clean:
        c.clean_scratch(nodes)
    for node in nodes:
        s = c.scratch(node)
        paths = s.files
        print(f"{node}:{c.facts.scratch}  {s.size_mb} MiB, {s.used_mb} used, {s.free_mb} free  {len(paths)} file(s)")
        print("".join(f"  {p}\n" for p in paths[:LIMIT]), end="")
        if len(paths) > LIMIT:
            print(f"  ... {len(paths) - LIMIT} more")
    return 0
