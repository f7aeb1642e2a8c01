#!/usr/bin/env python3
"""Measure bring-up and idle memory of the default cluster.

cold:  no minihpc images and no build cache -> `minihpc up` ready
warm:  images present, cluster destroyed (fresh volumes) -> ready
restart: after `minihpc down` (volumes kept) -> ready
resize: a running cluster 2 -> 3 nodes and back (`minihpc up --nodes 3`, then `--nodes 2`) -> ready
idle:  sum of the RSS of every process in every container, 30 s after ready

Writes bench/results/cluster.json with every sample and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from minihpc import BENCH_RESULTS

ROOT = Path(__file__).resolve().parent.parent

RESULTS = BENCH_RESULTS / "cluster.json"


def sh(*cmd: str, check: bool = True) -> str:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


def timed_up(*flags: str) -> float:
    t = time.monotonic()
    sh(sys.executable, "-m", "minihpc", "up", *flags)
    return time.monotonic() - t


def remove_images() -> None:
    ids = sh("docker", "images", "-q", "--filter", "reference=minihpc/*").split()
    if ids:
        sh("docker", "rmi", "-f", *sorted(set(ids)))
    sh("docker", "builder", "prune", "-af")


def idle_rss_mib() -> dict[str, float]:
    names = sh("docker", "ps", "--filter", "label=com.docker.compose.project=minihpc",
               "--format", "{{.Names}}").split()
    out = {}
    for name in names:
        rows = sh("docker", "top", name, "-eo", "pid,rss").splitlines()[1:]
        rss_kib = sum(int(r.split()[1]) for r in rows)
        out[name] = round(rss_kib / 1024, 1)
    return out


def summary(samples: list[float]) -> dict:
    return {"samples": [round(x, 1) for x in samples],
            "median": round(statistics.median(samples), 1) if samples else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--warm-runs", type=int, default=3)
    ap.add_argument("--cold-runs", type=int, default=1)
    ap.add_argument("--idle-settle", type=float, default=30)
    args = ap.parse_args()

    cold, warm, restart, grow, shrink = [], [], [], [], []
    for _ in range(args.cold_runs):
        sh(sys.executable, "-m", "minihpc", "destroy", "--yes")
        remove_images()
        cold.append(timed_up())
    for _ in range(args.warm_runs):
        sh(sys.executable, "-m", "minihpc", "destroy", "--yes")
        warm.append(timed_up())
    for _ in range(args.warm_runs):
        sh(sys.executable, "-m", "minihpc", "down")
        restart.append(timed_up())
    for _ in range(args.warm_runs):
        grow.append(timed_up("--nodes", "3"))
        shrink.append(timed_up("--nodes", "2"))
    time.sleep(args.idle_settle)
    rss = idle_rss_mib()

    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "nodes": 2,
        "cold_up_s": summary(cold),
        "warm_up_s": summary(warm),
        "restart_up_s": summary(restart),
        "resize_2_to_3_s": summary(grow),
        "resize_3_to_2_s": summary(shrink),
        "idle_rss_mib": {"per_container": rss, "total": round(sum(rss.values()), 1)},
        "targets": {"warm_up_s": 20, "cold_up_s": 300, "idle_rss_mib": 1536, "resize_s": 5},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
