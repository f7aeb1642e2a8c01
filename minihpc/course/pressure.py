"""Pressure: the lab's pressure workflow (lab/pressure) through profiles/slurm,
hundreds of short jobs whose requests together exceed the cluster, a fan-out
and a fan-in, and its grouped variant; proven from sacct and the queue.

While Snakemake runs, the login node samples the lab user's pending jobs and
their reasons every second (squeue); afterwards sacct gives every job's
state and times, from which the most CPUs in use at once is counted against
the cluster's.
"""

from __future__ import annotations

import math
from collections import Counter

from minihpc import PROOF_DIR
from minihpc.course.cores import SLURM, fresh
from minihpc.course.labctl import Lab, Labs, now_stamp
from minihpc.errors import MinihpcError
from minihpc.proofs import Proof, tail
from minihpc.runner import run_id
from minihpc.timeline import stamp, timeline

SNAKEFILE = "-s pressure/Snakefile"
TOTAL = "pressure/total.txt"
REASONS = ".pending-reasons"
# The lab's sizes: JOBS parts of SECONDS each, PER_GROUP parts per SLURM job when grouped.
JOBS, SECONDS, PER_GROUP = 200, 1, 10
MAX_JOBS = 10_000


def run_sampled(lab: Lab, args: str) -> tuple:
    """Run Snakemake while sampling the pending reasons of the lab user's jobs."""
    script = (f"rm -f {REASONS}; ( while sleep 1; do squeue --me -h -t PD -o %r >> {REASONS}; done ) & "
              f"sampler=$!; snakemake {args}; rc=$?; kill $sampler; exit $rc")
    run = lab.sh(script, timeout=3600)
    reasons = Counter(line.strip() for line in (lab.read(REASONS) or "").splitlines() if line.strip())
    return run, reasons


def most_cpus_at_once(rows: list[dict[str, str]]) -> int:
    """The most CPUs the jobs held at one moment (sacct's whole seconds: a job
    ending in the second another starts is counted as gone)."""
    events = []
    for r in rows:
        start, end = stamp(r["Start"]), stamp(r["End"])
        if start is not None and end is not None:
            events += [(start, 1, int(r["AllocCPUS"])), (end, 0, -int(r["AllocCPUS"]))]
    held = best = 0
    for _, _, delta in sorted(events):  # ends (0) before starts (1) in the same second
        held += delta
        best = max(best, held)
    return best


def pressure(labs: Labs, prefix: str = "pressure", grouped: bool = False, jobs: int = JOBS,
             seconds: float = SECONDS) -> Proof:
    """The pressure workflow through SLURM: the cluster full, jobs pending for
    Priority and Resources, every job COMPLETED, the fan-in's sum right."""
    f = labs.client.facts
    capacity = f.total_cpus
    name = f"{prefix}-grouped" if grouped else prefix
    c, lab = fresh(labs, "pressure", name)
    group = f"--groups part=parts --group-components parts={PER_GROUP} --cores 1" if grouped else ""
    since = now_stamp(lab)
    run, reasons = run_sampled(lab, f"{SLURM} {SNAKEFILE} --config jobs={jobs} seconds={seconds} {group}")
    rid = run_id(run.out)
    fields = ("JobID", "JobName", "State", "AllocCPUS", "NodeList", "Submit", "Start", "End")
    rows = [r for r in labs.client.sacct(since, fields) if r["JobName"] == rid]
    states = Counter(r["State"] for r in rows)
    most = most_cpus_at_once(rows)
    total = lab.read(TOTAL) or ""
    try:
        drawn = " and ".join(str(p) for p in timeline(labs.client, PROOF_DIR / f"{name}-timeline", run=rid)[0])
    except MinihpcError as e:  # no matplotlib on this host: the proof says so
        drawn = f"not drawn: {e}"
    lab.proof(f"{name}", run,
              f"# the cluster: {len(f.nodes)} nodes x {f.cpus} CPUs = {capacity} CPUs\n"
              f"# {jobs} parts asking 1 CPU each{f', {PER_GROUP} per SLURM job' if grouped else ''}\n"
              f"# SLURM jobs of run {rid}: {len(rows)}, states {dict(states)}\n"
              f"# most CPUs in use at once (sacct): {most} of {capacity}\n"
              f"# pending reasons seen (squeue samples, 1 s apart): {dict(reasons)}\n"
              f"# timeline: {drawn}\n",
              lab.sh(f"cat {TOTAL}"))
    want = math.ceil(jobs / PER_GROUP) if grouped else jobs
    c.exit("the run succeeds", run)
    c.check(f"the parts asked for more CPUs than the cluster has ({jobs} > {capacity})", jobs > capacity,
            f"{jobs} parts x 1 CPU, {capacity} CPUs")
    c.check(f"{want} SLURM jobs, every one COMPLETED", (len(rows), dict(states)) == (want, {"COMPLETED": want}),
            f"{len(rows)} jobs: {dict(states)}")
    c.check(f"the cluster was full: at most {capacity} CPUs at once, and all of them", most == capacity,
            f"most CPUs at once {most} of {capacity}")
    c.check("jobs pended for Resources (the next in line, waiting for CPUs)", reasons["Resources"] > 0,
            str(dict(reasons)))
    c.check("...and for Priority (behind a job ahead of them)", reasons["Priority"] > 0, str(dict(reasons)))
    c.check("the fan-in saw every part", total == f"{jobs} parts, sum {sum(range(jobs))}\n", tail(total))
    return c

