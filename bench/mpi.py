#!/usr/bin/env python3
"""MPI across nodes, and what a module costs a job.

The scaling curve: the site's MPI demo (`mpi-pi`, module mpi-demo) on 1 to
--max-ranks ranks (default 6: a rank on every CPU of `minihpc up --nodes 3`),
each an `srun` of its own spread over as many nodes as it needs, --reps
times. Figures: mpi-pi's own time for the sum (the slowest rank's, from its
JSON line), medians, the speed-up against one rank; and the srun's wall time
from the login node (allocation, PMIx wire-up and the program's start
included). Drawn to bench/results/mpi.png.

What `module load` adds to a job's start: in a batch job on a compute node,
the time `module load mpi-demo` (three modules: it loads openmpi and mpi4py)
and `module load scipy-stack` take, measured inside the job, --reps jobs.

Writes bench/results/mpi.json, mpi.md and mpi.png (python -m bench.report mpi
renders the .md again). Needs the cluster (make cluster-up; for 6 ranks,
minihpc up --nodes 3).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

from bench.report import BENCH_RESULTS, heading, table
from bench.report import save as save_result
from minihpc.cluster import Cluster

JOB = "-A lab -p short -t 5 --mem-per-cpu=200M"
INTERVALS = 40_000_000  # about 12 s on one rank here: enough work for the ranks to share
LOADS = ("mpi-demo", "scipy-stack")


def one_run(cluster: Cluster, ranks: int, nodes: int) -> dict:
    t = time.monotonic()
    r = cluster.sh(f"module load mpi-demo 2>/dev/null && srun {JOB} -N {nodes} -n {ranks} mpi-pi {INTERVALS}",
                   timeout=600)
    wall = time.monotonic() - t
    line = next((x for x in r.out.splitlines() if x.startswith("{")), None)
    if r.rc != 0 or line is None:
        sys.exit(f"bench: mpi-pi on {ranks} rank(s) failed (exit {r.rc}): {r.out.strip()[-400:]}")
    out = json.loads(line)
    if out["ranks"] != ranks or abs(out["pi"] - math.pi) > 1e-9:
        sys.exit(f"bench: mpi-pi on {ranks} rank(s) said {line}")
    return {"ranks": ranks, "nodes": out["nodes"], "compute_s": out["seconds"], "srun_s": round(wall, 2)}


def module_load(cluster: Cluster, node: str) -> dict:
    """One batch job on `node`: how long each `module load` took in it (a fresh shell each)."""
    where = f"{cluster.facts.shared}/bench-mpi"
    timed = "; ".join(f"s=$(date +%s%N); module load {m}; e=$(date +%s%N); module purge; echo {m} $(( (e - s) / 1000 ))"
                      for m in LOADS)
    r = cluster.sh(f"mkdir -p {where} && printf '#!/bin/bash\\n%s\\n' '{timed}' | sbatch -W --parsable {JOB} "
                   f"-w {node} -o {where}/%j.out >/dev/null && cat {where}/*.out && rm -f {where}/*.out", timeout=300)
    got = dict(line.split() for line in r.out.splitlines() if line.split()[:1] and line.split()[0] in LOADS)
    if r.rc != 0 or set(got) != set(LOADS):
        sys.exit(f"bench: the module-load job on {node} failed (exit {r.rc}): {r.out.strip()[-400:]}")
    return {m: round(int(us) / 1e6, 3) for m, us in got.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="runs per rank count, and module-load jobs (default 3)")
    ap.add_argument("--max-ranks", type=int, default=6, help="the largest rank count (default 6)")
    a = ap.parse_args()
    cluster = Cluster.local()
    f = cluster.facts
    cpus = f.cpus * len(f.nodes)
    if a.reps < 1 or not 1 <= a.max_ranks <= cpus:
        print(f"bench: --reps {a.reps} --max-ranks {a.max_ranks}: give 1 or more, and at most this cluster's "
              f"{cpus} CPUs (for 6: minihpc up --nodes 3)", file=sys.stderr)
        return 2
    samples = []
    for rep in range(a.reps):
        for ranks in range(1, a.max_ranks + 1):
            samples.append(one_run(cluster, ranks, math.ceil(ranks / f.cpus)))
            print(f"repetition {rep + 1}: {ranks} rank(s): {samples[-1]['compute_s']} s", flush=True)
    loads = [module_load(cluster, f.nodes[i % len(f.nodes)]) for i in range(a.reps)]
    cluster.sh(f"rm -rf {f.shared}/bench-mpi")
    curve = []
    for ranks in range(1, a.max_ranks + 1):
        mine = [s for s in samples if s["ranks"] == ranks]
        curve.append({"ranks": ranks, "nodes": len(mine[0]["nodes"]),
                      "compute_s": round(statistics.median(s["compute_s"] for s in mine), 3),
                      "srun_s": round(statistics.median(s["srun_s"] for s in mine), 2)})
    for c in curve:
        c["speedup"] = round(curve[0]["compute_s"] / c["compute_s"], 2)
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reps": a.reps,
              "cluster": {"nodes": len(f.nodes), "cpus_per_node": f.cpus}, "intervals": INTERVALS,
              "samples": samples, "curve": curve, "module_load": loads,
              "module_load_median_s": {m: round(statistics.median(x[m] for x in loads), 3) for m in LOADS}}
    draw(result)
    save_result("mpi", result, markdown)
    return 0


def draw(result: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ranks = [c["ranks"] for c in result["curve"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ranks, [c["speedup"] for c in result["curve"]], "o-", label="mpi-pi (median)")
    ax.plot(ranks, ranks, "--", color="grey", label="ideal")
    ax.set_xlabel(f"ranks (one per CPU; a node holds {result['cluster']['cpus_per_node']})")
    ax.set_ylabel("speed-up over one rank")
    ax.set_title(f"mpi-pi, {result['intervals']:,} strips, {result['cluster']['nodes']} nodes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(BENCH_RESULTS / "mpi.png", dpi=100)
    plt.close(fig)


def markdown(result: dict) -> str:
    c = result["cluster"]
    return "\n".join([
        *heading("MPI across nodes, and what a module costs a job", "mpi", result,
                 f"The site's MPI demo (`mpi-pi`, {result['intervals']:,} strips) on 1 to "
                 f"{result['curve'][-1]['ranks']} ranks on {c['nodes']} nodes of {c['cpus_per_node']} CPUs, each "
                 f"an `srun` of its own over as many nodes as it needs; medians of {result['reps']} runs. "
                 "`compute` is mpi-pi's own time for the sum (its slowest rank); `srun` is the wall time from the "
                 "login node, allocation and PMIx wire-up included."),
        *table(("ranks", "nodes", "compute s", "speed-up", "srun s"),
               [(x["ranks"], x["nodes"], x["compute_s"], f"{x['speedup']}x", x["srun_s"]) for x in result["curve"]]),
        "", "![speed-up against ranks](mpi.png)", "",
        "What `module load` takes inside a batch job on a compute node (a fresh load each; `mpi-demo` loads "
        f"`openmpi` and `mpi4py` with it), medians of {result['reps']} jobs:", "",
        *table(("module", "seconds"), sorted(result["module_load_median_s"].items())), "",
    ])


if __name__ == "__main__":
    sys.exit(main())
