#!/usr/bin/env python3
"""What a proof costs: `minihpc prove` against one plain `minihpc run`.

The workflow is tests/workflows/prove (four parts of 10 s through SLURM,
their sum and a timestamp on the login node) with its own profile. Each
repetition runs it once with `run` and once with `prove --faults none` (two
references side by side on the login node, then the run through the profile,
a Snakemake summary, the comparison and the audit), each from an empty
directory; the figures are the wall times from the caller's side, medians
over the repetitions, and their ratio, with prove's own runs as it timed
them. Then one `prove` with every fault (--faults-reps of them): its wall
time, and per fault when it landed in the faulted run and the time from
there to its verdict (the run's end). Then one `prove` through a profile
that stages through the nodes' scratch (--staging-reps of them: the four
runs, one of them the profile without its storage settings).

Writes bench/results/prove.json and prove.md (python -m bench.report prove
renders them again). Needs the cluster (make cluster-up).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.report import heading, table
from bench.report import save as save_result
from minihpc.cluster import Cluster
from minihpc.prove import prove
from minihpc.prove_faults import choose
from minihpc.runner import execute, plan

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "tests/workflows/prove"
STAGING_PROFILE = ROOT / "tests/workflows/prove-staging-profile"
NAME = "bench-prove"


def timed_run(cluster: Cluster, wf: Path, report: Path) -> dict:
    p = plan(str(wf), None, NAME, str(report), [], [], True, [])
    t = time.monotonic()
    r = execute(p, cluster, io.StringIO())
    wall = time.monotonic() - t
    if r.exit_code != 0:
        sys.exit(f"bench: the run failed (exit {r.exit_code}); its report: {report / 'report.md'}")
    return {"wall_s": round(wall, 1), "jobs": len(r.jobs)}


def timed_prove(cluster: Cluster, wf: Path, report: Path, faults: str = "none", profile: Path | None = None) -> dict:
    p = plan(str(wf), str(profile) if profile else None, NAME, str(report), [], [], True, [])
    t = time.monotonic()
    proof = prove(p, cluster, io.StringIO(), faults=choose(faults, cluster.facts, site=False))
    wall = time.monotonic() - t
    if proof.verdict != "pass":
        sys.exit(f"bench: the proof failed: {proof.summary}")
    return {"wall_s": round(wall, 1), **{f"{run}_s": r["seconds"] for run, r in proof.runs.items()},
            "faults": {o.fault: {"verdict": o.verdict, "landed_s": o.at_s, "to_verdict_s": o.to_verdict_s}
                       for o in proof.faults}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2, help="repetitions of run and prove, alternating (default 2)")
    ap.add_argument("--faults-reps", type=int, default=1, help="proofs with every fault after them (default 1)")
    ap.add_argument("--staging-reps", type=int, default=1, help="proofs through a staging profile (default 1)")
    a = ap.parse_args()
    if a.reps < 1 or a.faults_reps < 0 or a.staging_reps < 0:
        print(f"bench: --reps {a.reps} --faults-reps {a.faults_reps} --staging-reps {a.staging_reps}: give 1 or "
              "more, and 0 or more", file=sys.stderr)
        return 2
    cluster = Cluster.local()
    work = Path(tempfile.mkdtemp(prefix="bench-prove."))
    samples: dict[str, list[dict]] = {"run": [], "prove": [], "faults": [], "staging": []}
    try:
        for i in range(a.reps):
            wf = work / f"wf-{i}"
            shutil.copytree(WORKFLOW, wf)
            samples["run"].append(timed_run(cluster, wf, work / f"run-{i}"))
            samples["prove"].append(timed_prove(cluster, wf, work / f"prove-{i}"))
            print(f"repetition {i + 1}: run {samples['run'][-1]['wall_s']} s, prove {samples['prove'][-1]['wall_s']} s",
                  flush=True)
        for i in range(a.faults_reps):
            wf = work / f"wf-faults-{i}"
            shutil.copytree(WORKFLOW, wf)
            samples["faults"].append(timed_prove(cluster, wf, work / f"faults-{i}", "default"))
            print(f"with every fault {i + 1}: prove {samples['faults'][-1]['wall_s']} s", flush=True)
        for i in range(a.staging_reps):
            wf = work / f"wf-staging-{i}"
            shutil.copytree(WORKFLOW, wf)
            samples["staging"].append(timed_prove(cluster, wf, work / f"staging-{i}", profile=STAGING_PROFILE))
            print(f"through staging {i + 1}: prove {samples['staging'][-1]['wall_s']} s", flush=True)
    finally:
        cluster.sh(f"rm -rf {cluster.facts.shared}/{NAME} {cluster.facts.shared}/{NAME}.prove-*")
        shutil.rmtree(work, ignore_errors=True)
    med = {k: round(statistics.median(s["wall_s"] for s in ss), 1) for k, ss in samples.items() if ss}
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "workflow": "tests/workflows/prove",
              "reps": a.reps, "samples": samples, "median_s": med,
              "prove_over_run": round(med["prove"] / med["run"], 2),
              "faults_over_run": round(med["faults"] / med["run"], 2) if "faults" in med else None,
              "staging_over_run": round(med["staging"] / med["run"], 2) if "staging" in med else None}
    save_result("prove", result, markdown)
    return 0


def markdown(result: dict) -> str:
    med = result["median_s"]
    runs = [(i, s["wall_s"], p["wall_s"], p.get("reference-1_s", ""), p.get("reference-2_s", ""),
             p.get("policy_s", "")) for i, (s, p) in enumerate(zip(result["samples"]["run"],
                                                                   result["samples"]["prove"], strict=True), 1)]
    faulted = result["samples"].get("faults", [])
    staged = result["samples"].get("staging", [])
    per_fault = [(name, o["verdict"], o["landed_s"], o["to_verdict_s"]) for f in faulted[:1]
                 for name, o in f["faults"].items()]
    return "\n".join([
        *heading("What a proof costs", "prove", result,
                 f"`minihpc prove` against one plain `minihpc run` of `{result['workflow']}` with its own profile, "
                 f"each from an empty directory; wall seconds from the caller's side, medians of {result['reps']} "
                 "alternating repetitions (prove without faults), then prove with every fault."),
        *table(("figure", "run", "prove --faults none", "prove / run", "prove (every fault)", "with faults / run"),
               [("wall time, s", med["run"], med["prove"], f"{result['prove_over_run']}x", med.get("faults", ""),
                 f"{result['faults_over_run']}x" if result.get("faults_over_run") else "")]), "",
        *table(("repetition", "run s", "prove s", "reference-1 s", "reference-2 s", "policy s"), runs), "",
        *(table(("proof with every fault", "prove s", "reference-1 s", "reference-2 s", "policy s", "faults s"),
                [(i, f["wall_s"], f.get("reference-1_s", ""), f.get("reference-2_s", ""), f.get("policy_s", ""),
                  f.get("faults_s", "")) for i, f in enumerate(faulted, 1)]) + [""] if faulted else []),
        *(table(("fault (first proof with faults)", "verdict", "landed, s into the faulted run",
                 "from landing to the verdict, s"), per_fault) + [""] if per_fault else []),
        *(table(("proof through a staging profile", "prove s", "prove / run", "reference-1 s", "reference-2 s",
                 "slurm s", "policy s"),
                [(i, f["wall_s"], f"{round(f['wall_s'] / med['run'], 2)}x", f.get("reference-1_s", ""),
                  f.get("reference-2_s", ""), f.get("slurm_s", ""), f.get("policy_s", ""))
                 for i, f in enumerate(staged, 1)]) + [""] if staged else []),
        "The references run side by side on the login node, so prove costs about one reference, the policy "
        "run, Snakemake's summary of each run and the comparison more than a run. With faults, one more run "
        "through the profile takes them all, in turn, and every verdict comes when that run ends; the lost "
        "session's resume and the killed node's jobs run again (the node is marked down at once, as a health "
        "check would, not after SlurmdTimeout) are most of its time over a run. A profile that stages costs one "
        "run more: the run through it without its storage settings, before the staged one.",
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
