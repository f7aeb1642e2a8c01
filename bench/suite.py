"""Where make test's time goes: the suite's wall time split by what it waits on.

tests/run-suite.sh leaves a run's timeline in .suite/: phases.jsonl (the
bring-up, the cluster tests, the host-only tests), tests.jsonl (each test's
start and end, from tests/conftest.py), cpu.txt (the host's /proc/stat every
2 s) and, collected after the cluster tests, jobs.json (every Slurm job of
the run, from sacct). This script turns it into a table:

  bring-up       minihpc up: image builds, containers, daemons, first checks
  job running    a job running (but those below): the work, and Snakemake's
                 start-up inside the job
  SLURM timer    no job running but one that ends TIMEOUT or NODE_FAIL: the
                 test waiting on a time limit, or on SlurmdTimeout to notice
                 a dead node (from the job's start: an approximation)
  job queued     jobs pending and none running: the scheduler's own pace
                 (sched_interval, backfill, a busy or drained cluster)
  plugin polling after a job ended, until the next job of the same working
                 directory was submitted within the same test: the executor
                 plugin's status checks noticing the end, then Snakemake
                 scheduling the next
  no job         none of the above: Snakemake's start-up on the login node,
                 SLURM's timers with no job (a node's death noticed), a test's
                 own setup and checks, restarts, idle

A cluster phase's columns split its wall-clock time by what the cluster
was doing; below them, each file's and test's own time (side by side, tests
overlap, so these add up to more than the phase). The host-only tests run
beside the cluster tests (their phase is shown apart). Usage:

  bench/suite.py collect [DIR]            (run-suite.sh: sacct of the run)
  bench/suite.py report [DIR] [--name N] [--note TEXT]
                                          table on stdout; with --name, also
                                          bench/results/suite-N.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bench.report import save

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DIR = ROOT / ".suite"
FIELDS = ("JobID", "User", "JobName", "Submit", "Start", "End", "State", "WorkDir")
KINDS = ("job running", "SLURM timer", "job queued", "plugin polling", "no job")
TIMERS = ("TIMEOUT", "NODE_FAIL")  # states a job reaches by a SLURM timer running out
# A job's end and the next submission further apart than this are not one
# workflow waiting on the plugin (its longest status interval is 180 s).
POLL_MAX_S = 200.0

Span = tuple[float, float]


def collect(d: Path) -> int:
    """Every Slurm job since the run began, with the login node's clock
    offset (sacct's times are the node's local time)."""
    from minihpc.cluster import ROOT_USER, Cluster  # noqa: PLC0415 (only collect needs a cluster)

    phases = read_jsonl(d / "phases.jsonl")
    begun = min((p["start"] for p in phases), default=time.time() - 3600)
    c = Cluster.local()
    since = c.sh(f"date -d @{int(begun)} +%FT%T").out.strip()
    node_now = c.sh("date +%s; date +%FT%T").out.split()
    rows = c.sacct(since, FIELDS, user=ROOT_USER, all_users=True)
    offset = float(node_now[0]) - local_stamp(node_now[1], 0.0)
    (d / "jobs.json").write_text(json.dumps({"offset": offset, "jobs": rows}))
    print(f"suite: {len(rows)} jobs since {since} -> {d / 'jobs.json'}")
    return 0


def local_stamp(text: str, offset: float) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp() + offset


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def union(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s, e in sorted(x for x in spans if x[1] > x[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def minus(spans: list[Span], cut: list[Span]) -> list[Span]:
    """`spans` (a union) without what `cut` (a union) covers."""
    out: list[Span] = []
    for s, e in spans:
        for cs, ce in cut:
            if ce <= s or cs >= e:
                continue
            if cs > s:
                out.append((s, cs))
            s = max(s, ce)
            if s >= e:
                break
        if s < e:
            out.append((s, e))
    return out


def covered(spans: list[Span], window: Span) -> float:
    a, b = window
    return sum(max(0.0, min(e, b) - max(s, a)) for s, e in spans)


def job_spans(jobs: list[dict], offset: float, tests: list[Span] | None = None) -> dict[str, list[Span]]:
    """The timeline's four job-made layers, each a union, disjoint. A gap
    between a job's end and the next submission from its directory is
    polling only inside one of `tests` (each a test's span), if given: from
    one test to the next it is the suite moving on (many tests work in /tmp)."""
    timers, running, queued, polling = [], [], [], []
    by_dir: dict[str, list[tuple[float, float]]] = defaultdict(list)
    now = time.time()
    for j in jobs:
        try:
            submit = local_stamp(j["Submit"], offset)
        except ValueError:
            continue
        start = _stamp(j["Start"], offset)
        end = _stamp(j["End"], offset)
        if start is None:  # never started (cancelled while pending)
            queued.append((submit, end or now))
            continue
        queued.append((submit, start))
        (timers if (j.get("State") or "").split(" ")[0] in TIMERS else running).append((start, end or now))
        if end is not None:
            by_dir[j["WorkDir"]].append((submit, end))
    for runs in by_dir.values():
        runs.sort()
        for _, end in runs:
            nxt = min((s for s, _ in runs if s >= end), default=None)
            if nxt is not None and nxt - end <= POLL_MAX_S and (
                    tests is None or any(s <= end and nxt <= e for s, e in tests)):
                polling.append((end, nxt))
    run_u = union(running)
    timer_u = minus(union(timers), run_u)
    busy = union(timer_u + run_u)
    queue_u = minus(union(queued), busy)
    poll_u = minus(minus(union(polling), busy), queue_u)
    return {"SLURM timer": timer_u, "job running": run_u, "job queued": queue_u, "plugin polling": poll_u}


def _stamp(text: str, offset: float) -> float | None:
    try:
        return local_stamp(text, offset)
    except ValueError:  # Unknown, None
        return None


def cpu_busy(d: Path) -> Callable[[Span], float | None]:
    """How busy the host's cores were over a window, 0..1 of all of them
    (from cpu.txt: time, then /proc/stat's `cpu` line); None without samples."""
    samples = []
    path = d / "cpu.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        f = line.split()
        if len(f) >= 6 and f[1] == "cpu":
            ticks = [int(x) for x in f[2:]]
            samples.append((float(f[0]), sum(ticks) - ticks[3] - ticks[4], sum(ticks)))  # idle, iowait

    def busy(window: Span) -> float | None:
        inside = [s for s in samples if window[0] <= s[0] <= window[1]]
        if len(inside) < 2 or inside[-1][2] == inside[0][2]:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][2] - inside[0][2])
    return busy


def split(window: Span, layers: dict[str, list[Span]]) -> dict[str, float]:
    out = {k: covered(layers[k], window) for k in KINDS[:-1]}
    out["no job"] = max(0.0, window[1] - window[0] - sum(out.values()))
    return out


def report(d: Path, name: str | None, top: int, note: str = "") -> int:
    phases = read_jsonl(d / "phases.jsonl")
    tests = read_jsonl(d / "tests.jsonl")
    if not phases or not tests:
        print(f"suite: no timeline in {d}; run make test first (tests/run-suite.sh writes it)", file=sys.stderr)
        return 2
    jobs_file = d / "jobs.json"
    data = json.loads(jobs_file.read_text()) if jobs_file.exists() else {"offset": 0.0, "jobs": []}
    windows = [(t["start"], t["end"]) for t in tests if "tests/cluster/" in t["test"]]
    layers = job_spans(data["jobs"], data["offset"], windows)
    busy = cpu_busy(d)
    begun = min(p["start"] for p in phases)
    ended = max(p["end"] for p in phases)

    rows = []
    for t in tests:
        if "tests/cluster/" not in t["test"]:
            continue
        parts = split((t["start"], t["end"]), layers)
        rows.append({"test": t["test"], "start": t["start"], "s": round(t["end"] - t["start"], 1),
                     "alone": t.get("alone", True),
                     **{k: round(v, 1) for k, v in parts.items()}})
    host_tests = [t for t in tests if "tests/cluster/" not in t["test"]]
    whole = {"wall_s": round(ended - begun, 1), "jobs": len(data["jobs"]), "cluster_tests": len(rows),
             "host_tests": len(host_tests), "phases": []}
    for p in phases:
        entry = {"phase": p["phase"], "wall_s": round(p["end"] - p["start"], 1)}
        if (b := busy((p["start"], p["end"]))) is not None:
            entry["cpu_busy"] = round(b, 2)
        if p["phase"].startswith("cluster tests"):
            # Wall-clock time of the phase by what the cluster was doing, and the
            # test-seconds it held (more than its wall when tests ran side by side).
            entry["wall_split_s"] = {k: round(v, 1) for k, v in split((p["start"], p["end"]), layers).items()}
            inside = [r for r in rows if p["start"] - 1 <= r["start"] < p["end"]]
            entry["tests"] = len(inside)
            entry["test_s"] = round(sum(r["s"] for r in inside), 1)
        whole["phases"].append(entry)
    files: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        f = files[r["test"].split("::")[0]]
        f["tests"] += 1
        for k in ("s", *KINDS):
            f[k] += r[k]
    by_file = sorted(({"file": f, **{k: round(v, 1) for k, v in x.items()}} for f, x in files.items()),
                     key=lambda x: -x["s"])
    slowest = sorted(rows, key=lambda r: -r["s"])[:top]
    result = {"when": datetime.fromtimestamp(begun).astimezone().isoformat(timespec="seconds"),
              "host": "vm", "cpus": os.cpu_count(), "note": note, "whole": whole, "by_file": by_file,
              "slowest": slowest}
    if name:
        save(f"suite-{name}", result, markdown)
    else:
        print(markdown(result), end="")
    return 0


def markdown(result: dict) -> str:
    """A run's tables (bench/results/suite-NAME.md). A run recorded before a
    kind or the CPU sampling was measured has no column for it."""
    w, by_file, slowest, note = result["whole"], result["by_file"], result["slowest"], result.get("note", "")
    kinds = [k for k in KINDS if any(k in p.get("wall_split_s", {}) for p in w["phases"])]
    cpu_col = any("cpu_busy" in p for p in w["phases"])
    lines = [f"make test: {w['wall_s']:.0f} s wall, {w['cluster_tests']} cluster tests, {w['jobs']} Slurm jobs, "
             f"{w['host_tests']} host-only tests", "", *([note, ""] if note else []),
             "| phase | wall s | " + "host CPU busy | " * cpu_col + "tests | test-s | " + " | ".join(kinds) + " |",
             "|---|---:|" + "---:|" * cpu_col + "---:|---:|" + "---:|" * len(kinds)]
    for p in w["phases"]:
        sp = p.get("wall_split_s")
        cells = " | ".join(f"{sp[k]:.0f}" for k in kinds) if sp else " | ".join("" for _ in kinds)
        cpu = (f"{p['cpu_busy']:.0%} | " if "cpu_busy" in p else " | ") * cpu_col
        lines.append(f"| {p['phase']} | {p['wall_s']:.0f} | {cpu}{p.get('tests', '')} | "
                     f"{p['test_s']:.0f} | {cells} |" if sp else
                     f"| {p['phase']} | {p['wall_s']:.0f} | {cpu}| | {cells} |")
    lines += ["", "Host CPU busy: of all the host's cores, from /proc/stat every 2 s (near 100 %: the phase waits "
              "on CPU, not on the cluster). " * cpu_col + "Cluster phases' columns: wall-clock seconds by what the "
              "cluster was doing. Below: test-seconds (each test's own time, its fixtures included; tests side by "
              "side overlap).", "",
              "| file | tests | s | " + " | ".join(kinds) + " |", "|---|---:|---:|" + "---:|" * len(kinds)]
    for f in by_file:
        lines.append(f"| {f['file']} | {f['tests']:.0f} | {f['s']:.0f} | " +
                     " | ".join(f"{f[k]:.0f}" for k in kinds) + " |")
    lines += ["", "| slowest tests | alone | s | " + " | ".join(kinds) + " |",
              "|---|---|---:|" + "---:|" * len(kinds)]
    for r in slowest:
        lines.append(f"| {r['test']} | {'yes' if r['alone'] else ''} | {r['s']:.0f} | " +
                     " | ".join(f"{r[k]:.0f}" for k in kinds) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    c = sub.add_parser("collect", help="sacct of the run, after the cluster tests")
    c.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    r = sub.add_parser("report", help="the table")
    r.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    r.add_argument("--name", help="also write bench/results/suite-NAME.{json,md} (e.g. before, after)")
    r.add_argument("--top", type=int, default=25, help="slowest tests listed (default 25)")
    r.add_argument("--note", default="", help="a paragraph under the title: which run this was")
    a = ap.parse_args()
    if a.verb == "report" and a.name is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", a.name):
        print(f"suite: --name {a.name!r} is not a plain name; give letters, digits, - or _ (e.g. --name after): "
              "it becomes bench/results/suite-NAME.json", file=sys.stderr)
        return 2
    if a.verb == "collect":
        return collect(a.dir)
    return report(a.dir, a.name, a.top, a.note)


if __name__ == "__main__":
    sys.exit(main())
