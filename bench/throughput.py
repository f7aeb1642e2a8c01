#!/usr/bin/env python3
"""How fast the cluster turns jobs over, before and after the throughput
tuning (minihpc.configs.THROUGHPUT), in one run on the live cluster.

For each of `untuned` and `tuned` (slurm.conf rendered without and with the
tuning, applied with `scontrol reconfigure`), REPS times:
  - sbatch: JOBS trivial jobs (`sbatch --wrap true`) submitted in a loop on
    the login node: submissions per second, and jobs per second from the
    first submission until every one of them has ended;
  - the fan-out of lab/pressure (FANOUT parts of SECONDS s and a local
    fan-in) with profiles/local on as many cores as the cluster has CPUs,
    through profiles/slurm, and grouped (--groups part=g with as many parts
    per group as make one group per CPU, --cores 1: each group fits one CPU).
Medians of one run. Where the time of the slurm fan-out goes is read from
sacct (the last tuned run): each job's wait, the job-step Snakemake around
the srun step, the step's own Snakemake, the work; the run's start-up and
tail; and the host's CPU seconds per job from /proc/stat.

Writes bench/results/throughput.json and throughput.md (its tables; python
-m bench.report throughput renders them again). Needs the cluster (make
cluster-up); leaves it tuned.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.report import heading, save, table
from minihpc import RUN_DIR, releases
from minihpc.cluster import Cluster
from minihpc.configs import slurm_conf, write_if_changed
from minihpc.course.labctl import Lab, Labs
from minihpc.policy import Enforcement
from minihpc.timeline import stamp
from minihpc.topology import Topology

ROOT = Path(__file__).resolve().parent.parent

PRESSURE = "-s pressure/Snakefile"

# Runs on the login node as the lab user: one line of JSON.
DRAIN = r"""
n={n}; acct={acct}
t0=$(date +%s.%N)
for i in $(seq "$n"); do sbatch -Q -A "$acct" -t 1 --mem=100 -J bench-drain -o /dev/null --wrap true || exit 1; done
t1=$(date +%s.%N)
while squeue -h --me -n bench-drain | grep -q .; do sleep 0.1; done
t2=$(date +%s.%N)
printf '{{"submit_s": %s, "drain_s": %s}}\n' "$(echo "$t1 - $t0" | python3 -c 'print(round(eval(input()), 2))')" \
  "$(echo "$t2 - $t0" | python3 -c 'print(round(eval(input()), 2))')"
"""


def cpu_seconds() -> float:
    """The host's busy CPU time so far (user, nice, system, irq, softirq, steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / 100


def reconfigure(cluster: Cluster, tuned: bool) -> None:
    """Render slurm.conf with or without the tuning and make every daemon read it."""
    f = cluster.facts  # the cluster's own release and enforcement: only the tuning changes
    conf = slurm_conf(Topology.from_facts(f), tuned=tuned, release=releases.named(f.slurm),
                      enforcement=Enforcement.from_facts(f))
    write_if_changed(RUN_DIR / "etc" / "slurm.conf", conf)
    r = cluster.root("scontrol reconfigure", node="slurmctld")
    if r.rc != 0:
        sys.exit(f"bench: scontrol reconfigure failed: {r.out.strip()}")
    deadline = time.monotonic() + 120
    while True:
        cfg = cluster.sh("scontrol show config | grep '^Epilog'", timeout=60).out
        states = set(cluster.sh("sinfo -h -N -o %t", timeout=60).out.split())
        if ("minihpc-epilog" in cfg) == tuned and states == {"idle"}:
            return
        if time.monotonic() > deadline:
            sys.exit(f"bench: slurm did not take the {'tuned' if tuned else 'untuned'} config: {cfg} {states}")
        time.sleep(1)


def drain(cluster: Cluster, n: int) -> dict[str, float]:
    r = cluster.sh(DRAIN.format(n=n, acct=cluster.facts.lab_account), timeout=1200)
    if r.rc != 0:
        sys.exit(f"bench: the sbatch loop failed: {r.out.strip()[-400:]}")
    s = json.loads(r.out.strip().splitlines()[-1])
    return {**s, "submit_per_s": round(n / s["submit_s"], 1), "jobs_per_s": round(n / s["drain_s"], 2)}


def fanout(lab: Lab, cluster: Cluster, how: str, jobs: int, seconds: float) -> dict:
    lab.sh("rm -rf pressure/parts pressure/total.txt")
    since = cluster.now()
    c0 = cpu_seconds()
    r = lab.snakemake(f"{PRESSURE} --config jobs={jobs} seconds={seconds} {how}", timeout=1800)
    cpu = round(cpu_seconds() - c0, 1)
    total = lab.read("pressure/total.txt") or ""
    if r.rc != 0 or not total.startswith(f"{jobs} parts"):
        sys.exit(f"bench: the fan-out ({how}) failed:\n{r.out[-1500:]}")
    return {"wall_s": round(r.seconds, 1), "cpu_s": cpu, "since": since}


def breakdown(cluster: Cluster, run: dict, seconds: float, jobs_in_run: int) -> dict[str, float]:
    """Where a slurm fan-out's time went, from sacct's rows of its jobs and
    their steps, and the host's CPU time spent per job beyond the local run's."""
    fields = ("JobID", "Submit", "Start", "End")
    since, wall = run["since"], run["wall_s"]
    # Only this run's jobs: the runs after it started later.
    rows = [r for r in cluster.sacct(since, fields, steps=True) if stamp(r["Submit"]) <= stamp(since) + wall]
    alloc = {r["JobID"]: r for r in rows if "." not in r["JobID"]}
    step = {r["JobID"].split(".")[0]: r for r in rows if r["JobID"].endswith(".0")}
    med = statistics.median

    def span(r: dict[str, str]) -> float:
        return stamp(r["End"]) - stamp(r["Start"])

    jobs = [j for j in alloc if j in step]
    t_start = stamp(since)
    first_submit = min(stamp(a["Submit"]) for a in alloc.values())
    last_end = max(stamp(a["End"]) for a in alloc.values())
    return {
        "jobs": len(jobs),
        "job_median_s": med(span(alloc[j]) for j in jobs),
        "jobstep_snakemake_median_s": med(span(alloc[j]) - span(step[j]) for j in jobs),
        "step_snakemake_median_s": med(span(step[j]) - seconds for j in jobs),
        "work_s": seconds,
        "wait_median_s": med(stamp(alloc[j]["Start"]) - stamp(alloc[j]["Submit"]) for j in jobs),
        "until_first_submit_s": round(first_submit - t_start, 1),
        "after_last_job_s": round(t_start + wall - last_end, 1),
        "host_cpu_s_per_job_beyond_local": round((run["cpu_s"] - run["local_cpu_s"]) / jobs_in_run, 2),
    }


# The breakdown's keys as the table says them.
LABELS = {
    "jobs": "SLURM jobs of the run",
    "job_median_s": "the whole job, s",
    "jobstep_snakemake_median_s": "the job-step Snakemake around the srun step, s",
    "step_snakemake_median_s": "the srun step's own Snakemake (beyond the work), s",
    "work_s": "the work, s",
    "wait_median_s": "waiting in the queue (the run queues more jobs than CPUs), s",
    "until_first_submit_s": "Snakemake's start until its first sbatch, s",
    "after_last_job_s": "after the last job ended (status poll, local fan-in), s",
    "host_cpu_s_per_job_beyond_local": "host CPU per job beyond the local run's, s",
}


def median(samples: list[dict], key: str) -> float:
    return round(statistics.median(s[key] for s in samples), 2)


def markdown(result: dict) -> str:
    m, f = result["median"], result["fanout"]
    rows = [("sbatch submissions per second", "submit_per_s"),
            ("trivial jobs per second, submission to end", "jobs_per_s")]
    out = [(label, m["untuned"][k], m["tuned"][k]) for label, k in rows]
    for how in ("local", "slurm", "grouped"):
        out.append((f"fan-out {how}: wall s (ratio to local)",
                    *(f"{m[v][how]} ({m[v][how + '_ratio']}x)" for v in ("untuned", "tuned"))))
    for how in ("local", "slurm", "grouped"):
        out.append((f"fan-out {how}: host CPU s", *(m[v][how + "_cpu"] for v in ("untuned", "tuned"))))
    return "\n".join([
        *heading("Throughput", "throughput", result,
                 f"How fast the cluster ({result['nodes']} nodes x {result['cpus']} CPUs, {result['host_cpus']} "
                 f"host CPUs) turns jobs over, without and with the scheduler tuning: {result['drain_jobs']} "
                 f"trivial jobs submitted on the login node; the fan-out of lab/pressure ({f['jobs']} parts x "
                 f"{f['seconds']} s) locally (`{f['local']}`), through slurm (`{f['slurm']}`) and grouped "
                 f"(`{f['grouped']}`). Medians of {result['reps']}."),
        *table(("measure", "untuned", "tuned"), out), "",
        "Where a tuned slurm fan-out's time goes (sacct, medians per job):", "",
        *table(("part", "value"), ((LABELS.get(k, k), v) for k, v in result["breakdown"].items())),
    ]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each measure (default 3)")
    ap.add_argument("--jobs", type=int, default=100, help="trivial jobs per drain (default 100)")
    ap.add_argument("--fanout", type=int, default=24, help="parts of the fan-out (default 24)")
    ap.add_argument("--seconds", type=float, default=2, help="each part's work in seconds (default 2)")
    args = ap.parse_args()
    cluster = Cluster.local()
    f = cluster.facts
    slots = f.total_cpus
    per_group = max(1, -(-args.fanout // slots))
    hows = {"local": f"--profile profiles/local --cores {slots}",
            "slurm": "--profile profiles/slurm",
            "grouped": f"--profile profiles/slurm --groups part=g --group-components g={per_group} --cores 1"}
    lab = Labs(cluster).lab("bench-throughput")
    lab.reset()
    samples: dict[str, list[dict]] = {"untuned": [], "tuned": []}
    last: dict = {}
    try:
        for variant in ("untuned", "tuned"):
            reconfigure(cluster, tuned=variant == "tuned")
            for i in range(args.reps):
                s: dict = drain(cluster, args.jobs)
                for how, flags in hows.items():
                    run = fanout(lab, cluster, flags, args.fanout, args.seconds)
                    s[how], s[f"{how}_cpu"] = run["wall_s"], run["cpu_s"]
                    if how == "slurm":
                        last = {**run, "local_cpu_s": s["local_cpu"]}
                for how in hows:
                    s[f"{how}_ratio"] = round(s[how] / s["local"], 2)
                samples[variant].append(s)
                print(f"{variant} #{i + 1}: {s}", flush=True)
    finally:
        reconfigure(cluster, tuned=True)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nodes": len(f.nodes), "cpus": f.cpus, "host_cpus": len(os.sched_getaffinity(0)),
        "reps": args.reps, "drain_jobs": args.jobs,
        "fanout": {"jobs": args.fanout, "seconds": args.seconds, **hows},
        "samples": samples,
        "median": {v: {k: median(ss, k) for k in ss[0]} for v, ss in samples.items()},
        "breakdown": breakdown(cluster, last, args.seconds, args.fanout),
    }
    save("throughput", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
