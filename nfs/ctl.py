"""Choose and inspect the NFS-style client's profile, cluster-wide.

    minihpc-nfs list                      the named profiles
    minihpc-nfs show                      the active profile
    minihpc-nfs set NAME [--set k=v]... [--fault SPEC]...
    minihpc-nfs check NAME [--set k=v]... [--fault SPEC]...   validate only
    minihpc-nfs stats                     this node's client counters

`set` replaces the active-profile file in the backing store's control
directory; every node's client picks it up within a second (no restart).
Fault SPEC: ERROR:op=..,path=..,node=..,count=N|probability=P,seed=S, paths as
seen under the mountpoint, e.g. EIO:op=read,path=/lab/results/*,count=1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nfs.faults import FaultError, FaultRule
from nfs.profiles import PROFILES, Profile, ProfileError, named, read_active, write_active

CONTROL = Path(os.environ.get("MINIHPC_NFS_CONTROL", "/srv/nfs/control/profile.json"))
STATS = Path(os.environ.get("MINIHPC_NFS_STATS", "/run/minihpc-nfs/stats.json"))


def build(name: str, sets: list[str], faults: list[str]) -> Profile:
    overrides = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq:
            raise ProfileError(f"--set {item!r}: use key=value, e.g. --set delay=5")
        overrides[key] = value
    profile = named(name).with_options(**overrides)
    rules = tuple(FaultRule.parse(spec) for spec in faults)
    if rules:
        profile = Profile.from_dict({**profile.to_dict(), "faults": [r.to_dict() for r in rules]})
    return profile


def describe(p: Profile) -> str:
    cache = ("noac" if p.noac else f"acregmin={p.acregmin:g} acregmax={p.acregmax:g} "
             f"acdirmin={p.acdirmin:g} acdirmax={p.acdirmax:g}") + f" lookupcache={p.lookupcache}"
    parts = [f"profile: {p.name} ({p.digest})", f"  {p.description}" if p.description else "", f"  cache: {cache}",
             f"  delay: {p.delay:g}s{'' if p.delay_path == '*' else f' on {p.delay_path}'} "
             f"(directories {'too' if p.delay_dirs else 'exempt'})",
             f"  latency: rtt={p.rtt_ms:g}ms jitter={p.jitter_ms:g}ms meta=+{p.meta_ms:g}ms "
             f"bandwidth={'unlimited' if not p.bandwidth_mbs else f'{p.bandwidth_mbs:g}MB/s'}"]
    parts += [f"  fault: {json.dumps(r.to_dict(), sort_keys=True)}" for r in p.faults]
    return "\n".join(x for x in parts if x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="minihpc-nfs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--control", type=Path, default=CONTROL)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    sub.add_parser("show")
    sub.add_parser("stats")
    for cmd in ("set", "check"):
        s = sub.add_parser(cmd)
        s.add_argument("name")
        s.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
        s.add_argument("--fault", dest="faults", action="append", default=[], metavar="SPEC")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "list":
            width = max(map(len, PROFILES))
            print("\n".join(f"{n:<{width}}  {p.description}" for n, p in PROFILES.items()))
        elif a.cmd == "show":
            print(describe(read_active(a.control)))
        elif a.cmd == "stats":
            try:
                print(STATS.read_text().strip())
            except FileNotFoundError:
                print(f"no client statistics at {STATS}")
        else:
            profile = build(a.name, a.sets, a.faults)
            if a.cmd == "set":
                write_active(a.control, profile)
                print(f"NFS profile set (clients switch within 1 s):\n{describe(profile)}")
    except (ProfileError, FaultError) as e:
        print(f"minihpc-nfs: error: {e}", file=sys.stderr)
        return 2
    except PermissionError as e:
        # The profile and the statistics are root's: a user must not steer or
        # watch every node's client.
        print(f"minihpc-nfs: error: {e.filename}: permission denied; the NFS client's profile and statistics "
              "are root's: run it as root (minihpc nfs set, or docker exec -u root)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
