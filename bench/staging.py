#!/usr/bin/env python3
"""Staged against direct: a small-file-heavy rule on the live cluster.

The lab's shard_work rule splits 40 000 records into SHARDS small files next to
its output, sorts each into another file and merges them back: thousands of
creates, reads and unlinks. Through profiles/slurm those files are on the
shared filesystem; through profiles/slurm-staging on the node's scratch, with
one rsync in and one out. Both run under the same NFS-style client profile
(default `linux`: Linux client defaults on a LAN, 0.5 ms per round trip).

Each run is a fresh lab directory (a path no node has cached), the input made
first by its own run; the measured run is the shard_work job alone. Figures:
the SLURM job's wall time (sacct ElapsedRaw, what the node is busy for) and the
whole Snakemake run's wall time, medians over RUNS alternating runs; target:
the staged job at least 5 times faster.

Writes bench/results/staging.json and staging.md (its tables; python -m
bench.report staging renders them again). Needs the cluster (make cluster-up).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bench.report import against, heading, save, table
from minihpc.cluster import Cluster
from minihpc.course.cores import SLURM, submitted_ids
from minihpc.course.labctl import Labs
from minihpc.course.staging import INPUT, STAGING, TARGET
from nfs.profiles import named

ROOT = Path(__file__).resolve().parent.parent

MODES = {"direct": SLURM, "staged": STAGING}
TARGET_RATIO = 5.0


def one_run(labs: Labs, mode: str, i: int, shards: int) -> dict:
    lab = labs.lab(f"bench-staging-{mode}-{i}")
    lab.reset()
    cfg = f"--config shards={shards}"
    made = lab.snakemake(f"{MODES[mode]} {cfg} -- {INPUT}")
    if made.rc != 0:
        sys.exit(f"bench: making the input failed ({mode}):\n{made.out[-2000:]}")
    t = time.monotonic()
    run = lab.snakemake(f"{MODES[mode]} {cfg} -- {TARGET}")
    wall = time.monotonic() - t
    ids = submitted_ids(run.out)
    if run.rc != 0 or not ids:
        sys.exit(f"bench: the {mode} run failed:\n{run.out[-3000:]}")
    acct = lab.sh(f"sacct -n -X -P -j {ids[-1]} -o ElapsedRaw,State,NodeList").out.strip().split("|")
    if acct[1:2] != ["COMPLETED"]:
        sys.exit(f"bench: job {ids[-1]} ({mode}) is {acct}")
    summary = lab.read(TARGET)
    return {"job_s": int(acct[0]), "workflow_s": round(wall, 1), "node": acct[2], "jobid": ids[-1],
            "output": (summary or "").strip()}


def median_of(samples: list[dict], key: str) -> float:
    return round(statistics.median(s[key] for s in samples), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="linux", help="NFS client profile (default: linux)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shards", type=int, default=2000)
    args = ap.parse_args()
    profile = named(args.profile)

    labs = Labs(Cluster.local())
    samples: dict[str, list[dict]] = {m: [] for m in MODES}
    labs.client.set_nfs_profile(args.profile)
    try:
        for i in range(args.runs):
            for mode in MODES:
                s = one_run(labs, mode, i, args.shards)
                samples[mode].append(s)
                print(f"{mode} run {i + 1}: job {s['job_s']} s, workflow {s['workflow_s']} s", flush=True)
    finally:
        labs.client.set_nfs_profile("off")

    outputs = {s["output"] for ss in samples.values() for s in ss}
    if len(outputs) != 1:
        sys.exit(f"bench: staged and direct outputs differ: {outputs}")
    med = {m: {"job_s": median_of(ss, "job_s"), "workflow_s": median_of(ss, "workflow_s")}
           for m, ss in samples.items()}
    ratio = round(med["direct"]["job_s"] / med["staged"]["job_s"], 2)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nfs_profile": {"name": profile.name, "description": profile.description},
        "rule": f"shard_work: 40000 records through {args.shards} shard files (split, sort, merge)",
        "runs": args.runs,
        "samples": samples,
        "median": med,
        "job_speedup_staged": ratio,
        "workflow_speedup_staged": round(med["direct"]["workflow_s"] / med["staged"]["workflow_s"], 2),
        "target_job_speedup": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
    }
    save("staging", result, markdown)
    return 0


def markdown(result: dict) -> str:
    med, nfs, speedup = result["median"], result["nfs_profile"], result["job_speedup_staged"]
    figures = [("the SLURM job's wall time (sacct `ElapsedRaw`), s", med["direct"]["job_s"], med["staged"]["job_s"],
                f"{speedup}x", against(speedup, result["target_job_speedup"], unit="x")),
               ("the whole Snakemake run, s", med["direct"]["workflow_s"], med["staged"]["workflow_s"],
                f"{result['workflow_speedup_staged']}x", "")]
    runs = [(i, mode, s["job_s"], s["workflow_s"], s["node"], s["jobid"])
            for i, turn in enumerate(zip(*result["samples"].values(), strict=True), 1)
            for mode, s in zip(result["samples"], turn, strict=True)]
    outputs = sorted({s["output"] for ss in result["samples"].values() for s in ss})
    return "\n".join([
        *heading("Staging", "staging", result,
                 f"{result['rule']}, direct through `{SLURM}` against staged through `{STAGING}`, under the NFS "
                 f"profile `{nfs['name']}` ({nfs['description']}); a fresh lab directory per run, medians of "
                 f"{result['runs']} alternating runs."),
        *table(("figure", "direct", "staged", "staged speed-up", "target"), figures), "",
        *table(("run", "mode", "job s", "workflow s", "node", "job id"), runs), "",
        f"Every run's output: {'; '.join(f'`{o}`' for o in outputs)}.",
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
