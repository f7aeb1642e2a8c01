"""nfs list|show|set: the NFS-style shared filesystem's profile, cluster-wide."""

from __future__ import annotations

import argparse

from minihpc.cluster import Cluster
from minihpc.errors import BadInput


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nfs", help="the shared filesystem's client profile: list, show, set",
                       description="Choose how the NFS-style client on every node behaves (caching, delay, "
                                   "latency, faults); switching needs no restart.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = verbs.add_parser("list", help="the named profiles")
    v.set_defaults(run=list_profiles)
    v = verbs.add_parser("show", help="the active profile")
    v.set_defaults(run=show)
    v = verbs.add_parser("set", help="switch every node to a profile; returns once all run it")
    v.add_argument("name", help="a profile from `minihpc nfs list`")
    v.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set delay=6")
    v.add_argument("--fault", dest="faults", action="append", default=[], metavar="SPEC",
                   help="add a fault rule, e.g. EIO:op=read,path=/lab/results/*,count=1")
    v.set_defaults(run=set_profile)


def list_profiles(a: argparse.Namespace) -> int:
    from nfs.profiles import PROFILES
    width = max(map(len, PROFILES))
    print("\n".join(f"{n:<{width}}  {p.description}" for n, p in PROFILES.items()))
    return 0


def show(a: argparse.Namespace) -> int:
    r = Cluster.local().root("minihpc-nfs show")
    print(r.out, end="")
    return r.rc


def set_profile(a: argparse.Namespace) -> int:
    from nfs.ctl import build
    from nfs.faults import FaultError
    from nfs.profiles import ProfileError
    try:  # refused here, before any node is touched
        build(a.name, a.sets, a.faults)
    except (ProfileError, FaultError) as e:
        raise BadInput(str(e)) from None
    args = [a.name, *(x for s in a.sets for x in ("--set", s)), *(x for f in a.faults for x in ("--fault", f))]
    print(Cluster.local().set_nfs_profile(*args).out, end="")
    return 0
