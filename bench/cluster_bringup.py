#!/usr/bin/env python3
"""Measure bring-up and idle memory of the default cluster, or of another
Slurm release's (--slurm 22.05: results in cluster-22.05.json).

cold:  no minihpc image of the release (its Debian base included) and no build cache -> `minihpc up` ready
warm:  images present, cluster destroyed (fresh volumes) -> ready
restart: after `minihpc down` (volumes kept) -> ready
resize: a running cluster 2 -> 3 nodes and back (`minihpc up --nodes 3`, then `--nodes 2`) -> ready
idle:  sum of the RSS of every process in every container, 30 s after ready,
       and how busy the host's cores are over the next 30 s (healthchecks, daemons)

Writes bench/results/cluster.json with every sample and the medians, and
cluster.md (its table; python -m bench.report cluster renders it again).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import against, heading, listed, save, table
from minihpc import releases
from minihpc.transport import containers

ROOT = Path(__file__).resolve().parent.parent

IDLE_SETTLE_S = 30.0
IDLE_CPU_S = 30.0
BRING_UPS = {"cold_up_s": "cold: no `minihpc/*` image, no build cache", "warm_up_s": "warm: images present, "
             "fresh volumes (`minihpc destroy` first)", "restart_up_s": "restart after `minihpc down` (volumes kept)",
             "resize_2_to_3_s": "resize a running cluster 2 → 3 nodes (`minihpc up --nodes 3`)",
             "resize_3_to_2_s": "resize it back 3 → 2 nodes (`minihpc up --nodes 2`)"}
# The bring-ups' targets that share one (both resizes: resize_s).
TARGET_OF = {"resize_2_to_3_s": "resize_s", "resize_3_to_2_s": "resize_s"}


def sh(*cmd: str, check: bool = True) -> str:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


def timed_up(*flags: str) -> float:
    t = time.monotonic()
    sh(sys.executable, "-m", "minihpc", "up", *flags)
    return time.monotonic() - t


def remove_images(release: releases.Release) -> None:
    """The release's images and its Debian base (other releases' stay), and every build cache."""
    ids = sh("docker", "images", "-q", "--filter", f"reference=minihpc/*:*-{release.tag}", "--filter",
             f"reference={release.base_image}").split()
    if ids:
        sh("docker", "rmi", "-f", *sorted(set(ids)))
    sh("docker", "builder", "prune", "-af")


def idle_rss_mib() -> dict[str, float]:
    names = containers.ps("{{.Names}}", "status=running").stdout.split()
    out = {}
    for name in names:
        rows = containers.docker("top", name, "-eo", "pid,rss").splitlines()[1:]
        rss_kib = sum(int(r.split()[1]) for r in rows)
        out[name] = round(rss_kib / 1024, 1)
    return out


def busy_s() -> float:
    """CPU-seconds the host's cores have been busy since boot (/proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def idle_cpu_cores(seconds: float) -> float:
    """How many cores the idle cluster keeps busy, on average over `seconds` (nothing else running)."""
    t, b = time.monotonic(), busy_s()
    time.sleep(seconds)
    return round((busy_s() - b) / (time.monotonic() - t), 3)


def summary(samples: list[float]) -> dict:
    return {"samples": [round(x, 1) for x in samples],
            "median": round(statistics.median(samples), 1) if samples else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--warm-runs", type=int, default=3)
    ap.add_argument("--cold-runs", type=int, default=1)
    ap.add_argument("--idle-settle", type=float, default=IDLE_SETTLE_S)
    ap.add_argument("--slurm", default=releases.DEFAULT, help="the Slurm release (minihpc up --slurm)")
    args = ap.parse_args()
    release = releases.named(args.slurm)

    cold, warm, restart, grow, shrink = [], [], [], [], []
    for _ in range(args.cold_runs):
        sh(sys.executable, "-m", "minihpc", "destroy", "--yes")
        remove_images(release)
        cold.append(timed_up("--slurm", release.slurm))
    for _ in range(args.warm_runs):
        sh(sys.executable, "-m", "minihpc", "destroy", "--yes")
        warm.append(timed_up("--slurm", release.slurm))
    for _ in range(args.warm_runs):
        sh(sys.executable, "-m", "minihpc", "down")
        restart.append(timed_up())
    for _ in range(args.warm_runs):
        grow.append(timed_up("--nodes", "3"))
        shrink.append(timed_up("--nodes", "2"))
    time.sleep(args.idle_settle)
    rss = idle_rss_mib()
    cpu = idle_cpu_cores(IDLE_CPU_S)

    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "nodes": 2,
        "slurm": release.packaged,
        "debian": release.debian,
        "cold_up_s": summary(cold),
        "warm_up_s": summary(warm),
        "restart_up_s": summary(restart),
        "resize_2_to_3_s": summary(grow),
        "resize_3_to_2_s": summary(shrink),
        "idle_rss_mib": {"per_container": rss, "total": round(sum(rss.values()), 1)},
        "idle_cpu_cores": cpu,
        "targets": {"warm_up_s": 20, "cold_up_s": 300, "idle_rss_mib": 1536, "resize_s": 5},
    }
    save(_saved_as(result)[1] or "cluster", result, markdown, indent=2)
    return 0


def _saved_as(result: dict) -> tuple[str, str]:
    """Another release's results: the script's --slurm and the name they are saved under."""
    major = result.get("slurm", "")[:5]
    if not major or major == releases.DEFAULT:
        return "", ""
    return f"--slurm {major}", f"cluster-{major}"


def markdown(result: dict) -> str:
    t, rss = result["targets"], result["idle_rss_mib"]

    def target(key: str, value: float | None) -> str:
        return against(value, t[key], most=True) if key in t and value is not None else ""

    # Results from before the resizes were measured have no rows for them.
    rows = [(f"{label}, s", result[k]["median"], listed(result[k]["samples"]),
             target(TARGET_OF.get(k, k), result[k]["median"])) for k, label in BRING_UPS.items() if k in result]
    rows.append(("idle RSS, every process of every container, MiB", rss["total"], "",
                 target("idle_rss_mib", rss["total"])))
    if "idle_cpu_cores" in result:  # measured since ac1ac46
        rows.append((f"idle CPU: the host's cores busy over {IDLE_CPU_S:g} s after that, cores",
                     result["idle_cpu_cores"], "", ""))
    m = result["machine"]
    return "\n".join([
        *heading("Cluster bring-up", "cluster", result,
                 f"The default cluster ({result['nodes']} nodes"
                 + (f", Slurm {result['slurm']} from Debian {result['debian']}" if "slurm" in result else "")
                 + f") on a machine of {m['cpus']} CPUs (kernel "
                 f"{m['kernel']}): each bring-up timed until `minihpc up` reports the cluster ready, then the "
                 "resident memory of the idle cluster once it has settled "
                 f"(`--idle-settle`, {IDLE_SETTLE_S:g} s by default).", *_saved_as(result)),
        *table(("figure", "median", "samples", "target"), rows), "",
        "Idle RSS by container:", "",
        *table(("container", "MiB"), sorted(rss["per_container"].items(), key=lambda kv: -kv[1])),
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
