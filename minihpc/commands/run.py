"""run: bring your own workflow (minihpc.runner)."""

from __future__ import annotations

import argparse
import sys


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run your own workflow on the cluster through its profile, with a report",
        description="Sync PATH to the shared filesystem as the lab user, run Snakemake on the login node "
                    "through a profile (the workflow's profiles/slurm or workflow/profiles/default, else "
                    "minihpc's), stream its output, exit with its code, and write a report (markdown and "
                    "JSON) of every SLURM job of the run. Arguments after -- go to Snakemake.",
        usage="minihpc run [-h] [--profile DIR] [--name NAME] [--report DIR] [--fetch PATTERN] "
              "[--exclude PATTERN] [--fresh] [--requirements FILE] [--pip PKG [PKG ...]] [--no-requirements] "
              "[--site SITE] PATH [-- SNAKEMAKE ARGS]",
        epilog="example: minihpc run ~/my-workflow --fetch 'results/*.tsv' -- --keep-going")
    workflow_options(p, "run")
    p.add_argument("--fetch", action="append", default=[], metavar="PATTERN",
                   help="bring matching outputs back into PATH afterwards (repeatable), e.g. 'results/**/*.txt'")
    p.add_argument("--fresh", action="store_true", help="empty the shared directory first (drops earlier outputs)")
    p.add_argument("--site", metavar="SITE", help="run on a real SLURM site over SSH, as its site file says "
                                                   "(minihpc site check --help), instead of this machine's cluster")
    p.set_defaults(run=run, passthrough=[])


def workflow_options(p: argparse.ArgumentParser, verb: str) -> None:
    """What `run` and `prove` both take: the workflow, its profile, its name
    and report, what is synced and the Python packages its jobs need."""
    p.add_argument("path", metavar="PATH", help="the workflow's directory (holds the Snakefile)")
    p.add_argument("--profile", help="a Snakemake profile directory (relative to PATH, or any path)")
    p.add_argument("--name", help="directory name on the shared filesystem (default: PATH's name)")
    p.add_argument("--report", metavar="DIR", help="where report.md and report.json go (default PATH/.minihpc"
                                                   f"{'/prove' if verb == 'prove' else ''})")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="do not sync these (repeatable; .snakemake, .minihpc and .git never are)")
    p.add_argument("--requirements", action="append", default=[], metavar="FILE",
                   help="pip requirements the workflow's jobs need (repeatable; default: PATH/requirements.txt if "
                        "there): installed in a Python environment on the shared filesystem, made once and reused "
                        "(see minihpc env list)")
    p.add_argument("--pip", nargs="+", action="extend", default=[], metavar="PKG",
                   help="packages to add (repeatable), e.g. --pip numpy 'pandas>=2'")
    p.add_argument("--no-requirements", action="store_true",
                   help="run in the cluster's own environment, even with a requirements.txt at PATH")


def say_requirements(p) -> None:
    if p.requirements:
        hint = " (--no-requirements runs without it)" if p.requirements.source.endswith("root") else ""
        print(f"minihpc: requirements: {p.requirements.source}{hint}", file=sys.stderr)


def run(a: argparse.Namespace) -> int:
    from minihpc.cluster import Cluster
    from minihpc.runner import execute, plan
    p = plan(a.path, a.profile, a.name, a.report, a.fetch, a.exclude, a.fresh, a.passthrough, a.requirements,
             a.pip, a.no_requirements)
    if a.site:
        from minihpc.sitecheck import connect
        from minihpc.sitefile import load
        site = load(a.site)  # every field checked, then tried against the site, before anything is touched
        cluster = connect(site, session=False)
        p.site = site
    else:
        cluster = Cluster.local()  # no facts: a clear error before anything is touched
    say_requirements(p)
    report = execute(p, cluster)
    print(f"\nminihpc: run report: {p.report_dir / 'report.md'} ({len(report.jobs)} SLURM job(s), "
          f"Snakemake exit {report.exit_code})", file=sys.stderr)
    return report.exit_code
