#!/usr/bin/env python3
"""Run lab cores on the live cluster and print a pass/fail table.

    confirm.py                   every core from a clean lab state (make confirm)
    confirm.py core2             one core (make core2)
    confirm.py demo-scratch-full an instructor demo, ending with its fix (make demo-scratch-full)
    confirm.py --demos           every instructor demo (make demos)
    confirm.py --lab             the module's commissioning sequence (make lab)

Proof artifacts land in .proof/, one file per proof, holding real output.
Exit status is non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import sys

from cores import CORES, SLURM, Check, Core
from demos import DEMOS
from labctl import Lab
from staging import core3_staging

RUNS = {**CORES, "core3-staging": core3_staging}


def commissioning() -> Core:
    """The module's golden commissioning sequence, through the slurm profile."""
    c = Core("lab", Lab("lab"))
    lab = c.lab
    lab.reset()
    steps = [
        ("dry run", f"snakemake {SLURM} -n"),
        ("run (flaky_once needs its retry)", f"snakemake {SLURM} --retries 1"),
        ("flaky rerun with retries", f"snakemake {SLURM} --retries 1 results/flaky_once.txt"),
        ("generate unit tests", "snakemake --profile profiles/local results/staged_demo.txt "
                                "results/atomic_ok.txt --generate-unit-tests"),
        ("pytest .tests/unit", "pytest -q -p no:cacheprovider .tests/unit/"),
        ("drift report", "snakemake --list-changes code"),
    ]
    for i, (what, cmd) in enumerate(steps, 1):
        r = lab.sh(cmd)
        lab.proof(f"lab.{i}", r)
        c.check(what, r.rc == 0, f"exit {r.rc}")
    c.check("results/flaky_once.txt holds attempt=2", lab.read("results/flaky_once.txt") == "attempt=2\n")
    return c


def table(checks: list[Check]) -> str:
    w = max(len(c.name) for c in checks)
    lines = [f"{'core':6} {'check':{w}}  result", f"{'-' * 6} {'-' * w}  ------"]
    lines += [f"{c.core:6} {c.name:{w}}  {'PASS' if c.ok else 'FAIL'}" for c in checks]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", choices=[[], *RUNS, *DEMOS], metavar="NAME",
                    help=f"cores ({', '.join(RUNS)}) or demos ({', '.join(DEMOS)}); default: every core")
    ap.add_argument("--lab", action="store_true", help="run the commissioning sequence")
    ap.add_argument("--demos", action="store_true", help="run every instructor demo")
    args = ap.parse_args(argv)
    names = list(DEMOS) if args.demos else args.names or list(RUNS)
    runs = [commissioning] if args.lab else [RUNS[n] if n in RUNS else DEMOS[n].run for n in names]
    checks: list[Check] = []
    for run in runs:
        print(f"running {run.__name__} ...", flush=True)
        core = run()
        checks += core.checks
        for ch in core.checks:
            if not ch.ok:
                print(f"  FAIL {ch.name}: {ch.detail[:500]}", file=sys.stderr)
    print(table(checks))
    for name in (n for n in names if n in DEMOS and not args.lab):
        print(f"\n{name}: {DEMOS[name].title}\n  proof: .proof/{name.replace('demo-', 'demo.')}.txt\n"
              f"  fix: {DEMOS[name].fix}")
    failed = sum(not c.ok for c in checks)
    print(f"\n{len(checks) - failed}/{len(checks)} checks passed; proof artifacts in .proof/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
