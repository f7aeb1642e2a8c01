"""class: a class of learners on the cluster, an account each (minihpc.classroom)."""

from __future__ import annotations

import argparse

from minihpc import classroom


def _count(raw: str) -> int:
    if not raw.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of learners")
    return int(raw)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("class", help="a class of learners: an account each (add, list, remove)",
                       description="add N: learner01..learnerNN on every node (the same uid everywhere), each with "
                                   "a home (0700), /shared/class/NAME (0700) holding the course (~/course), a SLURM "
                                   f"association under the {classroom.ACCOUNT} account (the lab user's QOS, fair share "
                                   "among them) and an SSH key of their own for the login node, written for the "
                                   "instructor to hand out. list: who, and how to log in. remove: their jobs, "
                                   "accounts, homes, scratch, temporary files and (unless --keep-files) their "
                                   "files on /shared. "
                                   "A command cut short (a node down) is finished by running it again.",
                       epilog="examples:\n  minihpc class add 30\n  minihpc class list\n"
                              "  minihpc class remove learner07\n  minihpc class remove --all --yes",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = verbs.add_parser("add", help="learner01..learnerNN in the class (those missing made)")
    s.add_argument("count", type=_count, metavar="N", help=f"how many learners, 1 to {classroom.MAX_NAMES} (and what "
                                                           "the host holds)")
    s.set_defaults(run=add_learners)
    verbs.add_parser("list", help="the learners, their keys and how each logs in").set_defaults(run=list_learners)
    s = verbs.add_parser("remove", help="learners out of the class (asks first)")
    s.add_argument("names", nargs="*", metavar="NAME", help="learners to remove (e.g. learner07)")
    s.add_argument("--all", action="store_true", help="every learner")
    s.add_argument("--keep-files", action="store_true", help="keep their files on /shared")
    s.add_argument("--yes", action="store_true", help="do not ask")
    s.set_defaults(run=remove_learners)


def add_learners(a: argparse.Namespace) -> int:
    from minihpc import RUN_DIR
    from minihpc.bringup import host_memory_mb
    from minihpc.cluster import Cluster

    host_mb = host_memory_mb()
    classroom.check_count(a.count, host_mb)  # before the cluster is asked anything
    client = Cluster.local()
    new = classroom.add(client, a.count, host_mb)
    print(f"class: {len(new)} learner(s) added, {len(classroom.read())} in the class; their keys are in "
          f"{RUN_DIR / 'class'}/NAME/id_ed25519 (minihpc class list)")
    return 0


def list_learners(a: argparse.Namespace) -> int:
    from minihpc import RUN_DIR
    from minihpc.cluster import Cluster
    from minihpc.commands.status import table

    learners = classroom.read()
    if not learners:
        print("class: no learners (minihpc class add N)")
        return 0
    f = Cluster.local().facts
    print(table([{"name": x.name, "uid": str(x.uid), "key": str(classroom.key_dir(RUN_DIR, x.name) / "id_ed25519")}
                 for x in learners],
                [("LEARNER", "name"), ("UID", "uid"), ("PRIVATE KEY (hand out with known_hosts beside it)", "key")]))
    where = "" if f.ssh_address == "127.0.0.1" else f" (or this machine's address: sshd is on {f.ssh_address} too)"
    print(f"\neach logs in with: ssh -i KEY -p {f.ssh_port} NAME@127.0.0.1{where}; their course is in ~/course")
    return 0


def remove_learners(a: argparse.Namespace) -> int:
    from minihpc.cluster import Cluster
    from minihpc.commands.common import confirm
    from minihpc.errors import BadInput

    known = classroom.known()
    if bool(a.names) == a.all:
        raise BadInput("give learners' names or --all, not both or neither", "e.g. minihpc class remove learner07")
    names = known if a.all else classroom.check_names(a.names, known)
    if not names:
        print("class: no learners to remove")
        return 0
    keep = "" if a.keep_files else ", and their files on /shared"
    confirm(f"remove {len(names)} learner(s) ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''}): their jobs, "
            f"accounts, homes and scratch{keep}?", a.yes)
    classroom.remove(Cluster.local(), names, a.keep_files)
    print(f"class: removed {len(names)} learner(s); {len(classroom.read())} left")
    return 0
