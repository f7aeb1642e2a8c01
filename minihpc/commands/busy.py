"""busy: another user's background load, bounded in time (minihpc.busy)."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("busy", help="make the cluster busy with another user's higher-priority jobs (or stop it)",
                       description="start: the other lab user queues a job array of short tasks in her group's "
                                   "high QOS that holds every CPU but --leave for --minutes; the lab user's jobs "
                                   "then get what is left and pend for Resources and Priority. A deadline ends it "
                                   "by itself. stop: cancel it. status: its tasks.",
                       epilog="examples:\n  minihpc busy start --minutes 10\n  minihpc busy status\n"
                              "  minihpc busy stop", formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = verbs.add_parser("start", help="queue the load and return")
    s.add_argument("--minutes", type=float, default=10, help="how long the load lasts (default 10)")
    s.add_argument("--leave", type=int, default=1, help="CPUs left for everyone else (default 1)")
    s.set_defaults(run=start)
    verbs.add_parser("stop", help="cancel the load").set_defaults(run=stop)
    verbs.add_parser("status", help="the load's tasks, running and pending").set_defaults(run=status)


def start(a: argparse.Namespace) -> int:
    from minihpc import busy
    from minihpc.cluster import Cluster
    cluster = Cluster.local()
    load = busy.start(cluster, a.minutes, a.leave)
    f = cluster.facts
    print(f"busy: {f.other_user} queued job {load.job_id}: {load.tasks} tasks of {load.task_s} s in QOS "
          f"{busy.QOS}, {load.cpus} at a time, for about {load.minutes:g} min; stop it with: minihpc busy stop")
    return 0


def stop(a: argparse.Namespace) -> int:
    from minihpc import busy
    from minihpc.cluster import Cluster
    print(f"busy: cancelled {busy.stop(Cluster.local())} queued or running task(s)")
    return 0


def status(a: argparse.Namespace) -> int:
    from collections import Counter

    from minihpc import busy
    from minihpc.cluster import Cluster
    tasks = busy.running(Cluster.local())
    states = Counter(t["State"] for t in tasks)
    print(f"busy: {len(tasks)} task(s) queued or running: {dict(states) or 'none'}")
    return 0
