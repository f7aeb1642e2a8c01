"""env: the workflows' Python environments on the shared filesystem (minihpc.pyenv)."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="list or remove the Python environments minihpc run made",
                       description="The Python environments `minihpc run --requirements` made on the shared "
                                   "filesystem, one per distinct set of requirements, reused while they don't "
                                   "change.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("list", help="each environment: name, when made, size, what it adds")
    ls.set_defaults(run=list_envs)
    rm = verbs.add_parser("remove", help="remove environments (the next run that needs one makes it again)")
    rm.add_argument("names", nargs="*", metavar="NAME", help="environments to remove (py-...)")
    rm.add_argument("--all", action="store_true", help="remove every environment")
    rm.set_defaults(run=remove_envs)


def list_envs(a: argparse.Namespace) -> int:
    from minihpc import pyenv
    from minihpc.cluster import Cluster
    cluster = Cluster.local()
    envs = pyenv.listing(cluster)
    if not envs:
        print(f"no environments in {pyenv.envs_dir(cluster)}")
        return 0
    print(f"{'NAME':<16} {'MADE':<20} {'SIZE':>7}  ADDS (from)")
    for e in envs:
        if not e["complete"]:
            print(f"{e['name']:<16} {'(half-built)':<20} {e['size_mb']:>5}MB  rebuilt by the next run that needs it")
            continue
        print(f"{e['name']:<16} {e['made']:<20} {e['size_mb']:>5}MB  {' '.join(e['own']) or '-'} ({e['source']})")
    return 0


def remove_envs(a: argparse.Namespace) -> int:
    from minihpc import pyenv
    from minihpc.cluster import Cluster
    from minihpc.errors import BadInput
    if bool(a.names) == a.all:
        raise BadInput("give environment names or --all, not both or neither", "see minihpc env list")
    for name in pyenv.remove(Cluster.local(), a.names, a.all):
        print(f"removed {name}")
    return 0
