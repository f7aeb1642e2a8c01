#!/usr/bin/env python3
"""Run lab cores on the live cluster and print a pass/fail table (`minihpc
lab`, `minihpc confirm`, `minihpc core N`, `minihpc demo NAME`).

Proof artifacts land in .proof/, one file per proof, holding real output.
"""

from __future__ import annotations

import sys

from minihpc.course.cores import CORES, SLURM, Check, Core
from minihpc.course.demos import DEMOS
from minihpc.course.labctl import Lab
from minihpc.course.staging import core3_staging

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


def run(names: list[str], commissioning_only: bool = False) -> int:
    """Run cores and demos by name (every core if none), or the commissioning
    sequence; print the table and each demo's fix. 1 if any check failed."""
    names = names or list(RUNS)
    runs = [commissioning] if commissioning_only else [RUNS[n] if n in RUNS else DEMOS[n].run for n in names]
    checks: list[Check] = []
    for one in runs:
        print(f"running {one.__name__} ...", flush=True)
        core = one()
        checks += core.checks
        for ch in core.checks:
            if not ch.ok:
                print(f"  FAIL {ch.name}: {ch.detail[:500]}", file=sys.stderr)
    print(table(checks))
    for name in (n for n in names if n in DEMOS and not commissioning_only):
        print(f"\n{name}: {DEMOS[name].title}\n  proof: .proof/{name.replace('demo-', 'demo.')}.txt\n"
              f"  fix: {DEMOS[name].fix}")
    failed = sum(not c.ok for c in checks)
    print(f"\n{len(checks) - failed}/{len(checks)} checks passed; proof artifacts in .proof/")
    return 1 if failed else 0
