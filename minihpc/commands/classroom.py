"""class: a class of learners on the cluster, an account each (minihpc.classroom)."""

from __future__ import annotations

import argparse

from minihpc import PROOF_DIR, classroom

PAGE_PORT = 8080


def count_arg(raw: str) -> int:
    if not raw.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of learners")
    return int(raw)


def port_arg(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port (1 to 65535)")
    return int(raw)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("class", help="a class of learners: an account each (add, list, status, check, page, remove)",
                       description="add N: learner01..learnerNN on every node (the same uid everywhere), each with "
                                   "a home (0700), /shared/class/NAME (0700) holding the course (~/course), a SLURM "
                                   f"association under the {classroom.ACCOUNT} account (the lab user's QOS, fair share "
                                   "among them) and an SSH key of their own for the login node, written for the "
                                   "instructor to hand out. list: who, and how to log in. status: each one's jobs, "
                                   "proven cores and last error. check: the course's proofs as a learner. "
                                   "page: a live page of the cluster for the room and for each learner. "
                                   "remove: their jobs, "
                                   "accounts, homes, scratch, temporary files and (unless --keep-files) their "
                                   "files on /shared. "
                                   "A command cut short (a node down) is finished by running it again.",
                       epilog="examples:\n  minihpc class add 30\n  minihpc class list\n"
                              "  minihpc class status\n  minihpc class check learner07 core1\n  minihpc class page\n"
                              "  minihpc class remove learner07\n  minihpc class remove --all --yes",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = verbs.add_parser("add", help="learner01..learnerNN in the class (those missing made)")
    s.add_argument("count", type=count_arg, metavar="N",
                   help=f"how many learners, 1 to {classroom.MAX_NAMES} (and what the host holds)")
    s.set_defaults(run=add_learners)
    verbs.add_parser("list", help="the learners, their keys and how each logs in").set_defaults(run=list_learners)
    verbs.add_parser("status", help="per learner: jobs running, pending (why) and finished, the cores proven, the "
                                    "last error").set_defaults(run=class_status)
    s = verbs.add_parser("check", help="run the course's proofs as a learner, in labs of their own",
                         description="Run the course's cores that need no root (default: all of them) as the "
                                     "learner, in /shared/class/NAME/labs/, with their proofs and evidence in "
                                     f"{PROOF_DIR / 'class'}/NAME/; minihpc class status shows what each has proven.")
    s.add_argument("learner", metavar="LEARNER", help="e.g. learner07")
    s.add_argument("cores", nargs="*", metavar="CORE", help="cores to run (default: all that need no root)")
    s.set_defaults(run=class_check)
    s = verbs.add_parser("page", help="serve the class's live page until Ctrl-C: nodes, queue, faults, NFS, scratch, "
                                      "timeline",
                         description="Serve the class's live page from this machine: nodes and their states, the "
                                     "queue by user, partitions and QOS, the NFS profile and faults in force, scratch "
                                     "use per node and the timeline of the last half hour, refreshing every 2 s. Its "
                                     "data comes from the SLURM REST API (read with a user that has no Slurm "
                                     "association) and the cluster's own client; it has no way to change anything. "
                                     "The instructor's URL is printed; each learner's is in "
                                     "<state>/class/NAME/page-url, to hand out: a learner's page shows their jobs in "
                                     "detail and others' as counts.",
                         epilog="examples:\n  minihpc class page\n  minihpc class page --port 8081\n"
                                "  minihpc class page --address 192.168.1.20 --publish",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--port", type=port_arg, default=PAGE_PORT, help=f"the port (default {PAGE_PORT})")
    s.add_argument("--address", default="127.0.0.1",
                   help="where to listen (default 127.0.0.1, this machine only); another needs --publish")
    s.add_argument("--publish", action="store_true",
                   help="confirm serving the page on an --address beyond loopback (anyone who reaches it and has "
                        "a key sees it)")
    s.set_defaults(run=class_page)
    s = verbs.add_parser("remove", help="learners out of the class (asks first)")
    s.add_argument("names", nargs="*", metavar="NAME", help="learners to remove (e.g. learner07)")
    s.add_argument("--all", action="store_true", help="every learner")
    s.add_argument("--keep-files", action="store_true", help="keep their files on /shared")
    s.add_argument("--yes", action="store_true", help="do not ask")
    s.set_defaults(run=remove_learners)


def add_learners(a: argparse.Namespace) -> int:
    from minihpc.bringup import host_memory_mb

    host_mb = host_memory_mb()
    classroom.check_count(a.count, host_mb)  # before the cluster is asked anything
    added(a.count, host_mb)
    return 0


def added(count: int, host_mb: int | None) -> None:
    """learner01..learner<count> in the class of this machine's cluster, and what was done said."""
    from minihpc import RUN_DIR
    from minihpc.cluster import Cluster

    new = classroom.add(Cluster.local(), count, host_mb)
    print(f"class: {len(new)} learner(s) added, {len(classroom.read())} in the class; their keys are in "
          f"{RUN_DIR / 'class'}/NAME/id_ed25519 (minihpc class list)")


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


def class_status(a: argparse.Namespace) -> int:
    from minihpc.cluster import Cluster
    from minihpc.commands.status import table

    if not classroom.read():
        print("class: no learners (minihpc class add N)")
        return 0
    rows = classroom.status(Cluster.local(), PROOF_DIR)
    print(table(rows, [("LEARNER", "name"), ("RUNNING", "running"), ("PENDING (WHY)", "pending"),
                       ("FINISHED", "finished"), ("PROVEN", "proven"), ("NOT YET", "failing"),
                       ("LAST RUN'S FIRST ERROR", "error")]))
    return 0


def class_check(a: argparse.Namespace) -> int:
    from minihpc import course
    from minihpc.cluster import Cluster
    from minihpc.errors import BadInput
    from minihpc.proofs import table, verdict, write_evidence

    learners = {x.name: x for x in classroom.read()}
    name = classroom.check_names([a.learner], list(learners))[0]
    for core in a.cores:
        if core not in course.SITE_CORES:
            raise BadInput(f"{core[:40]!r} is not a core a learner can run",
                           f"choose from {', '.join(course.SITE_CORES)} (the others need root or faults)")
    checks = classroom.check(Cluster.local(), learners[name], list(dict.fromkeys(a.cores)) or list(course.SITE_CORES),
                             PROOF_DIR)
    print(table(checks))
    return verdict(checks, write_evidence(checks, PROOF_DIR / "class" / name))


def page_address(address: str, publish: bool) -> str:
    """The address to serve on, checked: an IPv4 address, loopback unless publishing is confirmed."""
    import ipaddress

    from minihpc.errors import BadInput

    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise BadInput(f"--address {address[:60]!r} is not an IPv4 address",
                       "give one of this machine's, e.g. --address 127.0.0.1") from None
    if not ip.is_loopback and not publish:
        raise BadInput(f"--address {address} serves the class's page beyond this machine: anyone who reaches it "
                       "with a learner's or your key sees the cluster",
                       "confirm it with --publish, or leave --address at 127.0.0.1")
    return address


def class_page(a: argparse.Namespace) -> int:
    import errno
    import socket

    from minihpc import RUN_DIR
    from minihpc.cluster import Cluster
    from minihpc.errors import BadInput, MinihpcError
    from minihpc.page import collect, server

    address = page_address(a.address, a.publish)
    client = Cluster.local()
    r = client.root(f"id -u {collect.PAGE_USER}", node="slurmctld", timeout=30)
    if r.rc != 0:
        raise MinihpcError(f"the cluster has no {collect.PAGE_USER} user (its images are older than the page)",
                           "rebuild and restart it: minihpc up")
    # On every interface, the learners' URLs name this machine as the room's network knows it.
    keys = server.Keys(RUN_DIR, f"http://{socket.gethostname() if address == '0.0.0.0' else address}:{a.port}")
    collector = collect.Collector(client, tick=keys.refresh)  # a learner added later gets a URL within a period
    try:
        httpd = server.serve(collector, keys, address, a.port)
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise BadInput(f"cannot serve on {address}:{a.port}: {e.strerror}",
                           "choose another --port (or an --address this machine has)") from None
        raise
    collector.start()  # the first page has data
    keys.refresh()  # each learner's URL file written before the instructor hands them out
    if not server.loopback(address):
        print(f"warning: the class's page is served on {address}:{a.port}, beyond this machine", flush=True)
    print(f"page: the instructor's view: {keys.instructor_url()}\n"
          f"page: each learner's URL is in {RUN_DIR / 'class'}/NAME/{server.URL_FILE} (hand it out with their key)\n"
          "page: serving until Ctrl-C", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop()
    return 0
