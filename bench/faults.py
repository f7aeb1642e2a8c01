#!/usr/bin/env python3
"""How long each fault takes to heal on the live cluster, applied with
`minihpc fault` (minihpc.faults) as an instructor would.

For each fault, REPS times: the time until Slurm notices (a node down in
sinfo), and the time from the undo until the cluster answers again (the node
idle in sinfo, `scontrol ping` up, sacct answering, every service healthy
after an engine restart). Then the workflow of tests/workflows/faults
(PARTS parts of SECONDS s) run clean and with a compute node killed while
it runs (the lab's profile plus --retries 2): its wall time and the ratio.
Medians of one invocation.

Writes bench/results/faults.json and faults.md (its tables; python -m
bench.report faults renders them again). Needs the cluster (make
cluster-up); leaves it as it found it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import heading, listed, save, table
from minihpc.cluster import Cluster
from minihpc.faults import Faults
from minihpc.runner import execute, plan

ROOT = Path(__file__).resolve().parent.parent

WORKFLOW = ROOT / "tests/workflows/faults"


def until(what: str, ok: Callable[[], bool], timeout: float = 300) -> float:
    """Seconds until ok() holds (polled every 0.5 s)."""
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > timeout:
            sys.exit(f"bench: {what} not within {timeout:.0f} s")
        time.sleep(0.5)
    return round(time.monotonic() - t0, 1)


class Probe:
    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    def state(self, node: str) -> str:
        return self.c.sh(f"sinfo -h -n {node} -o %t | head -n 1", timeout=60).out.strip()

    def down(self, node: str) -> bool:
        return self.state(node).startswith("down")

    def idle(self, node: str) -> bool:
        return self.state(node) == "idle"

    def ctld(self) -> bool:
        return "is UP" in self.c.sh("scontrol ping", timeout=60).out

    def sacct(self) -> bool:
        return self.c.sh("sacct -n -X -S now-1hours", timeout=60).rc == 0


def node_fault(f: Faults, p: Probe, node: str, fault: str, undo: str) -> dict[str, float]:
    f.apply(fault, node)
    noticed = until(f"{node} down", lambda: p.down(node))
    t1 = time.monotonic()
    f.apply(undo, node)
    until(f"{node} idle", lambda: p.idle(node))
    return {"noticed_s": noticed, "healed_s": round(time.monotonic() - t1, 1)}


def restart(f: Faults, service: str, answers: Callable[[], bool]) -> dict[str, float]:
    t0 = time.monotonic()
    f.apply("restart", service)
    until(f"{service} answering", answers)
    return {"healed_s": round(time.monotonic() - t0, 1)}


def reboot(f: Faults, p: Probe, nodes: list[str]) -> dict[str, float]:
    t0 = time.monotonic()
    f.apply("reboot")
    until("every node idle", lambda: all(p.idle(n) for n in nodes))
    until("sacct answering", p.sacct)
    return {"healed_s": round(time.monotonic() - t0, 1)}


def workflow(cluster: Cluster, name: str, parts: int, seconds: int, kill: str | None, f: Faults, p: Probe
             ) -> dict[str, object]:
    args = ["--retries", "2", "--config", f"parts={parts}", f"seconds={seconds}"]
    pl = plan(str(WORKFLOW), None, name, tempfile.mkdtemp(prefix="minihpc-bench-"), [], [], True, args)
    out: dict[str, object] = {}

    def killer() -> None:
        until(f"a job on {kill}", lambda: kill in cluster.sh("squeue --me -h -t R -o %N", timeout=60).out)
        f.apply("kill", kill)
        until(f"{kill} down", lambda: p.down(kill))
        f.apply("start", kill)

    t0 = time.monotonic()
    thread = threading.Thread(target=killer) if kill else None
    if thread:
        thread.start()
    with open("/dev/null", "w") as sink:
        report = execute(pl, cluster, sink)
    wall = round(time.monotonic() - t0, 1)
    if thread:
        thread.join()
    if report.exit_code != 0:
        sys.exit(f"bench: the workflow ({name}) failed: see {pl.report_dir}")
    out.update(wall_s=wall, jobs=len(report.jobs), states=sorted({j.state for j in report.jobs}))
    return out


def median(samples: list[dict], key: str) -> float:
    return round(statistics.median(s[key] for s in samples), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each fault (default 3)")
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--no-reboot", action="store_true", help="skip restarting the Docker engine")
    args = ap.parse_args()
    cluster = Cluster.local()
    f, p = Faults(cluster), Probe(cluster)
    node = cluster.facts.nodes[-1]
    cases: dict[str, Callable[[], dict]] = {
        f"kill {node}, start": lambda: node_fault(f, p, node, "kill", "start"),
        f"cut {node}, reconnect": lambda: node_fault(f, p, node, "cut", "reconnect"),
        "restart slurmctld": lambda: restart(f, "slurmctld", p.ctld),
        "restart slurmdbd": lambda: restart(f, "slurmdbd", p.sacct),
        "restart db": lambda: restart(f, "db", p.sacct),
    }
    if not args.no_reboot:
        cases["reboot (engine restart)"] = lambda: reboot(f, p, cluster.facts.nodes)
    samples: dict[str, list[dict]] = {}
    for name, case in cases.items():
        samples[name] = []
        for i in range(args.reps):
            s = case()
            samples[name].append(s)
            print(f"{name} #{i + 1}: {s}", flush=True)
    runs = {"clean": [], f"{node} killed": []}
    for i in range(args.reps):
        for label, kill in (("clean", None), (f"{node} killed", node)):
            s = workflow(cluster, f"bench-faults-{i}-{'kill' if kill else 'clean'}", args.parts, args.seconds,
                         kill, f, p)
            runs[label].append(s)
            print(f"workflow {label} #{i + 1}: {s}", flush=True)
    med = {name: {k: median(ss, k) for k in ss[0]} for name, ss in samples.items()}
    wf = {label: median(ss, "wall_s") for label, ss in runs.items()}
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nodes": cluster.facts.nodes,
        "reps": args.reps,
        "faults": samples,
        "median": med,
        "workflow": {"parts": args.parts, "seconds": args.seconds, "samples": runs, "median_wall_s": wf,
                     "ratio_killed_to_clean": round(wf[f"{node} killed"] / wf["clean"], 2)},
    }
    save("faults", result, markdown)
    return 0


def markdown(result: dict) -> str:
    med, wf = result["median"], result["workflow"]
    faults = [(name, m.get("noticed_s", ""), m["healed_s"],
               listed(s["noticed_s"] for s in result["faults"][name] if "noticed_s" in s),
               listed(s["healed_s"] for s in result["faults"][name])) for name, m in med.items()]
    runs = [(label, wf["median_wall_s"][label], listed(s["wall_s"] for s in ss), listed(s["jobs"] for s in ss),
             ", ".join(sorted({st for s in ss for st in s["states"]}))) for label, ss in wf["samples"].items()]
    return "\n".join([
        *heading("Healing from faults", "faults", result,
                 f"Each fault applied with `minihpc fault` on the cluster of nodes {', '.join(result['nodes'])}, "
                 f"{result['reps']} times. Noticed: until `sinfo` shows the node down. Healed: from the undo (or "
                 "the restart) until the node is `idle` in `sinfo`, `scontrol ping` answers, `sacct` answers, or "
                 "after the engine restart every node is idle and `sacct` answers."),
        *table(("fault", "noticed, median s", "healed, median s", "noticed, samples", "healed, samples"), faults),
        "",
        f"The workflow of tests/workflows/faults ({wf['parts']} parts of {wf['seconds']} s, `--retries 2`), "
        "clean and with a node killed while it runs:", "",
        *table(("run", "wall, median s", "wall, samples", "jobs", "job states"), runs), "",
        f"Killed over clean (medians): {wf['ratio_killed_to_clean']}.",
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
