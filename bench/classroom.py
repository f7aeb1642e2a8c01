#!/usr/bin/env python3
"""A class on the cluster: what making it costs, and what the REST API costs.

- The time `minihpc class add 30` takes from no class (accounts on every
  node, associations, keys, /shared directories, each learner's course), and
  `class remove --all` after it, --reps times; medians.
- slurmrestd's memory (RSS of its process, and its container's memory use)
  at idle, and with 30 learners' jobs queued (one pending job each) after
  each learner has read their jobs through it with their own token; and how
  long a learner's GET of their jobs takes (median of the 30).

Writes bench/results/class.json and class.md (python -m bench.report class
renders the .md again). Needs the cluster (make cluster-up) with no class on
it: it makes and removes its own.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from bench.report import heading, table
from bench.report import save as save_result
from minihpc import classroom, rest
from minihpc.bringup import host_memory_mb
from minihpc.cluster import Cluster
from minihpc.facts import REST
from minihpc.transport import container_name

LEARNERS = 30


def restd_memory(cluster: Cluster) -> dict:
    """slurmrestd's RSS (KiB, from ps) and its container's memory use (MiB, docker stats)."""
    rss = cluster.root("ps -o rss= -C slurmrestd", node=REST).out.split()
    stats = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container_name(REST)],
                           capture_output=True, text=True, check=False).stdout.split("/")[0].strip()
    if not rss:
        sys.exit("bench: no slurmrestd process in the restd container: is the cluster up? minihpc status")
    return {"rss_kib": sum(int(x) for x in rss), "container": stats}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="adds and removes of the whole class (default 3)")
    a = ap.parse_args()
    if a.reps < 1:
        print(f"bench: --reps {a.reps}: give 1 or more", file=sys.stderr)
        return 2
    cluster = Cluster.local()
    f = cluster.facts
    if classroom.known():
        print("bench: a class is on the cluster already; remove it first: minihpc class remove --all --yes",
              file=sys.stderr)
        return 2
    host_mb = host_memory_mb()
    idle = restd_memory(cluster)
    adds, removes = [], []
    for rep in range(a.reps):
        t = time.monotonic()
        classroom.add(cluster, LEARNERS, host_mb)
        adds.append(round(time.monotonic() - t, 1))
        if rep < a.reps - 1:
            t = time.monotonic()
            classroom.remove(cluster, classroom.known(), keep_files=False)
            removes.append(round(time.monotonic() - t, 1))
        print(f"repetition {rep + 1}: add {adds[-1]} s" + (f", remove {removes[-1]} s" if removes[rep:] else ""),
              flush=True)
    learners = classroom.read()
    jobs = []
    for x in learners:
        r = classroom.as_learner(cluster, x).sh("sbatch --parsable --begin=now+1hour -t 5 -o /dev/null --wrap true")
        if r.rc != 0:
            sys.exit(f"bench: {x.name} could not submit: {r.out.strip()[-300:]}")
        jobs.append(r.out.split()[-1])
    reads = []
    path = f"/slurm/{rest.api(f)}/jobs"
    for x in learners:
        tok = rest.token(cluster, x.name, 300)
        t = time.monotonic()
        answer = rest.get(f, path, x.name, tok)
        reads.append(round(time.monotonic() - t, 3))
        if not answer.ok or {rest.job_owner(j) for j in answer.body["jobs"]} != {x.name}:
            sys.exit(f"bench: {x.name}'s jobs through the REST API: {answer.status} {answer.errors[:2]}")
    loaded = restd_memory(cluster)
    cluster.root(f"scancel {' '.join(jobs)}")
    t = time.monotonic()
    classroom.remove(cluster, classroom.known(), keep_files=False)
    removes.append(round(time.monotonic() - t, 1))
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reps": a.reps, "learners": LEARNERS,
              "cluster": {"nodes": len(f.nodes), "slurm": f.slurm}, "add_s": adds, "remove_s": removes,
              "add_median_s": statistics.median(adds), "remove_median_s": statistics.median(removes),
              "rest_jobs_get_s": reads, "rest_jobs_get_median_s": statistics.median(reads),
              "restd_idle": idle, "restd_with_jobs": loaded}
    save_result("class", result, markdown)
    return 0


def markdown(result: dict) -> str:
    n = result["learners"]
    return "\n".join([
        *heading("A class on one cluster", "class", result,
                 f"`minihpc class add {n}` from no class and `class remove --all` after it, {result['reps']} times "
                 f"on {result['cluster']['nodes']} compute nodes (Slurm {result['cluster']['slurm']}); then each "
                 f"of the {n} learners queues one job and reads their jobs through the REST API with their own "
                 "token. The page of the class is not measured yet."),
        *table(("what", "median", "samples"),
               [(f"class add {n}", f"{result['add_median_s']} s", ", ".join(map(str, result["add_s"]))),
                ("class remove --all", f"{result['remove_median_s']} s", ", ".join(map(str, result["remove_s"]))),
                ("a learner's GET of their jobs (REST)", f"{result['rest_jobs_get_median_s']} s",
                 f"{n} learners")]),
        "",
        *table(("slurmrestd", "RSS", "container memory"),
               [("idle", f"{result['restd_idle']['rss_kib'] / 1024:.1f} MiB", result["restd_idle"]["container"]),
                (f"after {n} learners' reads, {n} jobs queued",
                 f"{result['restd_with_jobs']['rss_kib'] / 1024:.1f} MiB", result["restd_with_jobs"]["container"])]),
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
