"""timeline: a picture of a run, from sacct (minihpc.timeline)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "timeline", help="draw a run's jobs (PNG and SVG): a lane per node and CPU, a bar per job, the queue",
        description="Draw, from sacct, the lab user's SLURM jobs of the last run (or of --run ID, or of a "
                    "--since/--until window): one lane per node and CPU slot, one bar per job coloured by rule, "
                    "the time each job waited in the queue, and below them the jobs pending and the CPUs in use "
                    "against the cluster's. Needs matplotlib on this host (pip install 'minihpc[timeline]').",
        epilog="examples:\n  minihpc timeline\n  minihpc timeline --run 4f0c...-...  -o report/timeline\n"
               "  minihpc timeline --since now-30minutes --all-users",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", dest="run_id", metavar="ID",
                   help="the SLURM run ID Snakemake printed (default: the last run)")
    p.add_argument("--since", metavar="TIME", help="every job from TIME (now-30minutes, 2026-11-29T09:00) ...")
    p.add_argument("--until", metavar="TIME", help="... until TIME (default now); needs --since")
    p.add_argument("--all-users", action="store_true",
                   help="also draw other users' jobs of the same time (grey), e.g. a busy cluster's load")
    p.add_argument("-o", "--output", default="minihpc-timeline", metavar="PATH",
                   help="write PATH.png and PATH.svg (default: minihpc-timeline in this directory)")
    p.set_defaults(run=draw)


def draw(a: argparse.Namespace) -> int:
    from minihpc.cluster import Cluster
    from minihpc.errors import BadInput
    from minihpc.timeline import check_run, check_when, need_matplotlib, timeline
    if a.run_id and a.since:
        raise BadInput("--run and --since both given", "select by run ID or by time window, not both")
    if a.until and not a.since:
        raise BadInput("--until without --since", "give the window's start too, e.g. --since now-1hours")
    check_run(a.run_id)
    check_when("--since", a.since)
    check_when("--until", a.until)
    need_matplotlib()
    paths, n = timeline(Cluster.local(), Path(a.output), a.run_id, a.since, a.until, a.all_users)
    print(f"timeline: {n} job(s) drawn: {' and '.join(str(p) for p in paths)}")
    return 0
