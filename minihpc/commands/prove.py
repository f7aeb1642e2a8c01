"""prove: the workflow keeps its meaning under its policy (minihpc.prove)."""

from __future__ import annotations

import argparse
import sys

from minihpc.commands.run import say_requirements, workflow_options
from minihpc.prove_faults import NAMES


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prove", help="prove your workflow computes the same through its profile (SLURM) as without it",
        description="Run the workflow at PATH three times, each from an empty directory of its own on the shared "
                    "filesystem, as `minihpc run` does: twice as a reference (the local executor on the login "
                    "node, a node's cores) and once through its profile. Then compare every file each run made, "
                    "by checksum: a file the two references disagree on is nondeterministic (compared by "
                    "existence and size, or by your --compare), a declared log by existence; any other "
                    "difference fails the proof and names the file and its rule. On minihpc, a fourth run "
                    "through the profile takes faults (--faults), each at a moment chosen from the run, and each "
                    "gets a verdict: survived, survived with different outputs, failed (why, and the setting that "
                    "survives it) or not applied. Writes report.md and "
                    "report.json (and each run's own report beside them); exits 0 on a pass, 1 on a failure. "
                    "Arguments after -- go to Snakemake, in every run.",
        usage="minihpc prove [-h] [--profile DIR] [--name NAME] [--report DIR] [--exclude PATTERN] "
              "[--requirements FILE] [--pip PKG [PKG ...]] [--no-requirements] [--compare CMD] [--faults LIST] "
              "[--site SITE] PATH "
              "[-- SNAKEMAKE ARGS]",
        epilog="example: minihpc prove ~/my-workflow -- --configfile config/test.yaml")
    workflow_options(p, "prove")
    p.add_argument("--compare", metavar="CMD",
                   help="how to compare a file the two references disagree on (a timestamp, a random seed's): "
                        "CMD REFERENCE_FILE POLICY_FILE, run on this machine in PATH's directory, on private "
                        "copies of the two files, exits 0 for the same meaning (default: existence and size). "
                        "CMD is split into words as a shell would, never run by one")
    p.add_argument("--faults", metavar="LIST",
                   help="on minihpc, the faults applied to one more run through the profile, each at a moment "
                        f"chosen from the run: comma-separated from {', '.join(NAMES)} (slow-nfs=PROFILE names "
                        "the shared filesystem's profile, default lag-10), or none (default: all of them; "
                        "with --site: none, and no other value is allowed)")
    p.add_argument("--site", metavar="SITE", help="prove on a real SLURM site over SSH, as its site file says "
                                                   "(minihpc site check --help): meaning and the audit, no faults")
    p.set_defaults(run=run, passthrough=[])


def run(a: argparse.Namespace) -> int:
    from minihpc.cluster import Cluster
    from minihpc.prove import compare_command, prove
    from minihpc.prove_faults import choose
    from minihpc.runner import plan
    compare_with = compare_command(a.compare, a.path)
    report = a.report or str(a.path.rstrip("/") + "/.minihpc/prove")
    p = plan(a.path, a.profile, a.name, report, [], a.exclude, True, a.passthrough, a.requirements, a.pip,
             a.no_requirements)
    if a.site:
        from minihpc.sitecheck import connect
        from minihpc.sitefile import load
        faults = choose(a.faults, None, site=True)  # refused before the site is even tried
        site = load(a.site)  # every field checked, then tried against the site, before anything is touched
        cluster = connect(site, session=False)
        p.site = site
    else:
        cluster = Cluster.local()  # no facts: a clear error before anything is touched
        faults = choose(a.faults, cluster.facts, site=False)
    say_requirements(p)
    proof = prove(p, cluster, compare_with=compare_with, faults=faults)
    print(f"\nminihpc prove: {proof.verdict.upper()}: {proof.summary}\nminihpc prove: report: "
          f"{p.report_dir / 'report.md'}", file=sys.stderr)
    return 0 if proof.verdict == "pass" else 1
