#!/usr/bin/env python3
"""Each node's private scratch, inspected from the host (make scratch).

    scratch.py            the login node and every compute node
    scratch.py c1 c2      those nodes only

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nodes", nargs="*", help="node names (default: login and every compute node)")
    args = ap.parse_args(argv)
    known = ["login", *compute_nodes()]
    unknown = [n for n in args.nodes if n not in known]
    if unknown:
        print(f"scratch: no node {', '.join(unknown)}; this cluster has {' '.join(known)}", file=sys.stderr)
        return 2
    print("\n".join(report(n) for n in args.nodes or known))
    return 0


if __name__ == "__main__":
    sys.exit(main())
