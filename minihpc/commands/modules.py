"""modules list|add|remove: the site's environment modules (Lmod), and the
ones an administrator adds from pip requirements (minihpc.modules)."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("modules", help="the site's environment modules: list, add from pip requirements, remove",
                       description="Environment modules (Lmod) on every node: the site's own (in the image) and "
                                   "those added here from pip requirements, built offline as `minihpc run "
                                   "--requirements` builds environments, root's and read-only for every user, "
                                   "listed by `module avail` on every node at once.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("list", help="every module: the site's and the added ones, with their packages")
    ls.set_defaults(run=list_modules)
    a = verbs.add_parser("add", help="make a module from a pip requirements file",
                         description="Make module NAME/VERSION (VERSION: today's date if not given) from a pip "
                                     "requirements file: the host's pip downloads wheels for the cluster's "
                                     "Python, the login node installs them offline, as root.")
    a.add_argument("module", metavar="NAME[/VERSION]", help="e.g. mytools/1.0 (letters, digits, . _ + -)")
    a.add_argument("--requirements", "-r", required=True, metavar="FILE",
                   help="a pip requirements file (names, versions, markers; -r/-c of files beside it)")
    a.set_defaults(run=add_module)
    rm = verbs.add_parser("remove", help="remove an added module (never one of the site's)")
    rm.add_argument("module", metavar="NAME/VERSION")
    rm.set_defaults(run=remove_module)


def list_modules(a: argparse.Namespace) -> int:
    from minihpc import modules
    from minihpc.cluster import Cluster
    rows = modules.listing(Cluster.local())
    width = max((len(r["module"]) for r in rows), default=6)
    print(f"{'MODULE':<{width}}  {'TREE':<5}  PACKAGES (added from)")
    for r in rows:
        what = "" if r["tree"] == "site" else \
            f"{' '.join(r.get('packages', [])) or '-'} ({r.get('source', '?')}, {r.get('made', '?')})"
        print(f"{r['module']:<{width}}  {r['tree']:<5}  {what}".rstrip())
    return 0


def add_module(a: argparse.Namespace) -> int:
    from minihpc import modules
    from minihpc.cluster import Cluster
    from minihpc.runner import say
    spec, req = modules.check(a.module, a.requirements)
    meta = modules.add(Cluster.local(), spec, req, say=say)
    held = " ".join(meta["packages"]) or "nothing beyond the cluster's"
    print(f"added module {meta['module']} in {meta['seconds']} s: {held}; every node lists it: "
          f"module avail {meta['module'].split('/')[0]}")
    return 0


def remove_module(a: argparse.Namespace) -> int:
    from minihpc import modules
    from minihpc.cluster import Cluster
    spec = modules.parse(a.module)
    print(f"removed module {modules.remove(Cluster.local(), spec)}")
    return 0
