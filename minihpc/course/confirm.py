#!/usr/bin/env python3
"""Run lab cores on the live cluster and print a pass/fail table (`minihpc
lab`, `minihpc confirm`, `minihpc core N`, `minihpc demo NAME`).

Proof artifacts land in .proof/, one file per proof, holding real output.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from minihpc import PROOF_DIR
from minihpc.cluster import Cluster
from minihpc.course.cores import CORES, LOCAL, SLURM, fresh
from minihpc.course.demos import DEMOS
from minihpc.course.labctl import Labs, now_stamp, sacct_jobs
from minihpc.course.resources import core6
from minihpc.course.staging import core3_staging
from minihpc.course.underload import under_load
from minihpc.proofs import Check, Proof, line_with, table, tail, verdict, write_evidence

RUNS = {**CORES, "core3-staging": core3_staging, "core6": core6}


# The module's "Golden commissioning command sequence", word for word. The lab
# is cluster-first: it runs with profiles/slurm where the module prints
# profiles/local, and changes nothing else.
PRINTED = [
    "snakemake --profile profiles/local -n",
    "snakemake --profile profiles/local --cores 2",
    "snakemake --profile profiles/local --retries 1 results/flaky_once.txt",
    "snakemake --profile profiles/local --generate-unit-tests",
    "pytest .tests/unit/",
    "snakemake --profile profiles/local --list-changes code",
]
# Outputs of rule all besides the flaky one (which step 3 makes).
DETERMINISTIC = ["results/staged_demo.txt", "results/atomic_ok.txt"]
# ERRATA 14 and 15: converge first, generate tests for deterministic rules only.
FIX = [
    f"snakemake {SLURM} --retries 1",
    f"rm -rf .tests && snakemake {SLURM} {' '.join(DETERMINISTIC)} --generate-unit-tests",
    "pytest .tests/unit/",
    f"snakemake {SLURM} --list-changes code",
]


def failed_tests(pytest_out: str) -> list[str]:
    """Rules whose generated test failed (pytest's short summary)."""
    return re.findall(r"^FAILED \S*test_(\w+)\.py", pytest_out, re.M)


def commissioning(labs: Labs) -> Proof:
    """The module's commissioning sequence as printed, its expected failures
    named and proven (ERRATA 14, 15), then the fix."""
    c, lab = fresh(labs, "lab", "lab")
    since = now_stamp(lab)
    r = []
    for i, printed in enumerate(PRINTED, 1):
        if i == 4:  # what step 2 left undone decides step 4's fate (ERRATA 15)
            missing = [t for t in DETERMINISTIC if not lab.exists(t)]
        r.append(lab.sh(printed.replace(LOCAL, SLURM)))
        lab.proof(f"lab.{i}", f"# printed: {printed}\n", r[-1])
    jobs = sacct_jobs(lab, since)
    flaky = [j for j in jobs if j["Comment"] == "rule_flaky_once"]

    c.exit("1 dry run: exits 0", r[0])
    c.exit("2 run: fails (flaky_once fails its one attempt; no --retries)", r[1], zero=False)
    c.says("2 run: Snakemake reports the error in rule flaky_once", r[1], "Error in rule flaky_once")
    c.check("2 run: sacct shows flaky_once's first SLURM job FAILED", [j["State"] for j in flaky[:1]] == ["FAILED"],
            str(flaky))
    c.exit("3 flaky rerun with --retries 1: exits 0", r[2])
    c.check("3 flaky rerun: results/flaky_once.txt was written by attempt 2",
            lab.read("results/flaky_once.txt") == "attempt=2\n", repr(lab.read("results/flaky_once.txt")))
    c.check("4 generate unit tests: crashes exactly when step 2 left an output unmade (ERRATA 15)",
            (r[3].rc != 0) == bool(missing), f"missing before step 4: {missing}\n{tail(r[3])}")
    c.check("4 generate unit tests: a crash is Snakemake's FileNotFoundError on the missing output",
            r[3].rc == 0 or "FileNotFoundError" in r[3].out, line_with(r[3].out, "FileNotFoundError") or tail(r[3]))
    c.exit("5 pytest .tests/unit/: fails", r[4], zero=False)
    c.check("5 pytest: no generated test fails but flaky_once's, which runs one attempt (ERRATA 14)",
            set(failed_tests(r[4].out)) <= {"flaky_once"}, tail(r[4]))
    c.exit("6 drift report: exits 0", r[5])

    fixed = [lab.sh(cmd) for cmd in FIX]
    lab.proof("lab.fix", *fixed)
    c.exit("fix: the converged run (--retries 1) exits 0", fixed[0])
    c.exit("fix: unit tests generated for the deterministic rules", fixed[1])
    c.exit("fix: pytest .tests/unit/ passes", fixed[2])
    c.says("fix: ...both tests", fixed[2], "2 passed")
    c.exit("fix: the drift report exits 0", fixed[3])
    c.check("fix: ...and lists no changed code", not re.search(r"^results/", fixed[3].out, re.M), tail(fixed[3]))
    return c


def run(client: Cluster, names: list[str | Callable[[Labs], Proof]], commissioning_only: bool = False,
        busy: bool = False) -> int:
    """Run cores and demos by name or as given (every core if none), or the commissioning
    sequence, on the cluster `client` reaches, with `busy` under another user's load
    (minihpc.course.underload); print the table and each demo's fix. 1 if any check failed."""
    labs = Labs(client)
    names = names or list(RUNS)
    runs = [commissioning] if commissioning_only else [
        n if callable(n) else RUNS.get(n) or DEMOS[n].run for n in names]
    checks: list[Check] = []

    def each() -> None:
        for one in runs:
            print(f"running {one.__name__} ...", flush=True)
            core = one(labs)
            checks.extend(core.checks)
            for ch in core.failed:
                print(f"  FAIL {ch.name}: {ch.evidence[:500]}", file=sys.stderr)
    if busy:
        checks.extend(under_load(client, each).checks)
    else:
        each()
    print(table(checks))
    evidence = write_evidence(checks, PROOF_DIR)
    for name in (n for n in names if isinstance(n, str) and n in DEMOS and not commissioning_only):
        print(f"\n{name}: {DEMOS[name].title}\n  proof: {PROOF_DIR}/{name.replace('demo-', 'demo.')}.txt\n"
              f"  fix: {DEMOS[name].fix}")
    return verdict(checks, evidence)
