#!/usr/bin/env python3
"""Each node's private scratch, inspected from the host (make scratch).

    scratch.py            the login node and every compute node
    scratch.py c1 c2      those nodes only
    scratch.py --clean    empty every node's scratch (refused while jobs run)

Every node has its own tmpfs at /scratch (size SCRATCH_MB): what a job staged
there is visible on that node and nowhere else, so the evidence has to come
from each node's own filesystem.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from labctl import compute_nodes, node_sh

SCRATCH = "/scratch"


def files(node: str, under: str = SCRATCH) -> list[str]:
    """Regular files under a path on one node's scratch (read as root)."""
    r = node_sh(f"find {shlex.quote(under)} -type f 2>/dev/null | sort", service=node, user="root")
    return r.out.split("\n")[:-1] if r.out else []


def usage(node: str) -> str:
    """`df` of the node's scratch: size, used and free in MiB."""
    r = node_sh(f"df -m --output=size,used,avail {SCRATCH} | tail -n 1", service=node, user="root")
    size, used, avail = (r.out.split() + ["?"] * 3)[:3]
    return f"{size} MiB, {used} used, {avail} free"


def report(node: str, limit: int = 40) -> str:
    paths = files(node)
    lines = [f"{node}:{SCRATCH}  {usage(node)}  {len(paths)} file(s)"]
    lines += [f"  {p}" for p in paths[:limit]]
    if len(paths) > limit:
        lines.append(f"  ... {len(paths) - limit} more")
    return "\n".join(lines)


def clean(nodes: list[str]) -> str | None:
    """Empty the nodes' scratch, as a site's epilog would; None when done, else
    why not. Never while a job runs: its staged files are in use."""
    queue = node_sh("squeue -h -o 'job %i of %u, %T'", user="root")
    if queue.rc != 0:
        return f"cannot ask SLURM for running jobs: {queue.out.strip()}"
    if queue.out.strip():
        jobs = "; ".join(line.strip() for line in queue.out.strip().splitlines())
        return f"jobs are queued or running ({jobs}); wait for them or scancel them, then clean"
    for node in nodes:
        r = node_sh(f"find {SCRATCH} -mindepth 1 -delete", service=node, user="root")
        if r.rc != 0:
            return f"{node}: {r.out.strip()}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nodes", nargs="*", help="node names (default: login and every compute node)")
    ap.add_argument("--clean", action="store_true", help="remove everything on the nodes' scratch first")
    args = ap.parse_args(argv)
    known = ["login", *compute_nodes()]
    unknown = [n for n in args.nodes if n not in known]
    if unknown:
        print(f"scratch: no node {', '.join(unknown)}; this cluster has {' '.join(known)}", file=sys.stderr)
        return 2
    nodes = args.nodes or known
    if args.clean:
        why = clean(nodes)
        if why is not None:
            print(f"scratch: not cleaned: {why}", file=sys.stderr)
            return 2
    print("\n".join(report(n) for n in nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
