#!/usr/bin/env python3
"""A class on the cluster: what making it costs, and what the REST API costs.

- The time `minihpc class add 30` takes from no class (accounts on every
  node, associations, keys, /shared directories, each learner's course), and
  `class remove --all` after it, --reps times; medians.
- slurmrestd's memory (RSS of its process, and its container's memory use)
  at idle, and with 30 learners' jobs queued (one pending job each) after
  each learner has read their jobs through it with their own token; and how
  long a learner's GET of their jobs takes (median of the 30).
- The live page (`minihpc class page`, its own process): its RSS with the
  class made and nothing queued, and with the 30 jobs queued while the
  instructor and the 30 learners each poll their page's data every 2 s
  (as the page does) for VIEW_S seconds; how long those requests take
  (median); how long the collector takes to gather what everyone sees
  (median of its cycles); and the refresh latency: from a learner's sbatch
  returning to their job in their page's data, and in the instructor's,
  REFRESH_REPS times (medians).

Writes bench/results/class.json and class.md (python -m bench.report class
renders the .md again). Needs the cluster (make cluster-up) with no class on
it: it makes and removes its own.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.report import heading, table
from bench.report import save as save_result
from minihpc import RUN_DIR, classroom, rest
from minihpc.bringup import host_memory_mb
from minihpc.cluster import Cluster
from minihpc.facts import REST
from minihpc.transport import container_name

LEARNERS = 30
VIEW_S = 20  # seconds the 31 viewers poll
POLL_S = 2.0  # how often the page asks for its data (minihpc/page/page.js)
REFRESH_REPS = 5


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Page:
    """`minihpc class page` as an instructor starts it, and its viewers' keys."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "minihpc", "class", "page", "--port", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     stdin=subprocess.DEVNULL)
        first = self.proc.stdout.readline()
        if "key=" not in first:
            self.proc.kill()
            sys.exit(f"bench: minihpc class page did not start: {first}{self.proc.stdout.read()[-1000:]}")
        self.instructor = first.split("key=", 1)[1].strip()

    def state(self, key: str) -> tuple[float, dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/state.json",
                                     headers={"Cookie": f"minihpc_page={key}"})
        t = time.monotonic()
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (our own page)
            body = json.loads(r.read())
        return time.monotonic() - t, body

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


def view(page: Page, keys: list[str], seconds: float) -> list[float]:
    """Every key's holder polls their page's data every POLL_S for `seconds`; each request's time."""
    took: list[float] = []
    end = time.monotonic() + seconds

    def viewer(key: str) -> None:
        while time.monotonic() < end:
            took.append(page.state(key)[0])
            time.sleep(POLL_S)

    with ThreadPoolExecutor(len(keys)) as pool:
        list(pool.map(viewer, keys))
    return took


def refresh_latency(page: Page, cluster: Cluster, learner: classroom.Learner, key: str) -> tuple[float, float]:
    """From the learner's sbatch returning to the job in their page's data, and in the instructor's."""
    r = classroom.as_learner(cluster, learner).sh("sbatch --parsable --begin=now+1hour -t 5 -o /dev/null --wrap true")
    t0 = time.monotonic()
    job = r.out.split()[-1]
    seen: dict[str, float] = {}
    while len(seen) < 2 and time.monotonic() - t0 < 60:
        for who, k in (("learner", key), ("instructor", page.instructor)):
            if who not in seen and job in {j["id"] for j in page.state(k)[1]["jobs"]}:
                seen[who] = round(time.monotonic() - t0, 2)
        time.sleep(0.05)
    cluster.root(f"scancel {job}")
    if len(seen) < 2:
        sys.exit(f"bench: job {job} of {learner.name} not on the page within 60 s ({seen})")
    return seen["learner"], seen["instructor"]


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
    page = Page()
    time.sleep(3 * POLL_S)  # a few of its collector's cycles
    page_idle = rss_kib(page.proc.pid)
    keys = {x.name: (classroom.key_dir(RUN_DIR, x.name) / "page-key").read_text().strip() for x in learners}
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
    requests = view(page, [page.instructor, *keys.values()], VIEW_S)
    page_loaded = rss_kib(page.proc.pid)
    cycles = []
    for _ in range(10):  # one sample per cycle
        time.sleep(POLL_S)
        cycles.append(page.state(page.instructor)[1]["took_s"])
    loaded = restd_memory(cluster)
    refresh = [refresh_latency(page, cluster, learners[0], keys[learners[0].name]) for _ in range(REFRESH_REPS)]
    page.close()
    cluster.root(f"scancel {' '.join(jobs)}")
    t = time.monotonic()
    classroom.remove(cluster, classroom.known(), keep_files=False)
    removes.append(round(time.monotonic() - t, 1))
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reps": a.reps, "learners": LEARNERS,
              "cluster": {"nodes": len(f.nodes), "slurm": f.slurm}, "add_s": adds, "remove_s": removes,
              "add_median_s": statistics.median(adds), "remove_median_s": statistics.median(removes),
              "rest_jobs_get_s": reads, "rest_jobs_get_median_s": statistics.median(reads),
              "restd_idle": idle, "restd_with_jobs": loaded,
              "page": {"rss_idle_kib": page_idle, "rss_viewed_kib": page_loaded, "viewers": len(keys) + 1,
                       "view_s": VIEW_S, "requests": len(requests),
                       "request_median_s": round(statistics.median(requests), 3),
                       "collect_median_s": round(statistics.median(cycles), 3),
                       "refresh_learner_s": [r[0] for r in refresh], "refresh_instructor_s": [r[1] for r in refresh],
                       "refresh_learner_median_s": statistics.median(r[0] for r in refresh),
                       "refresh_instructor_median_s": statistics.median(r[1] for r in refresh)}}
    save_result("class", result, markdown)
    return 0


def markdown(result: dict) -> str:
    n, p = result["learners"], result["page"]
    return "\n".join([
        *heading("A class on one cluster", "class", result,
                 f"`minihpc class add {n}` from no class and `class remove --all` after it, {result['reps']} times "
                 f"on {result['cluster']['nodes']} compute nodes (Slurm {result['cluster']['slurm']}); then each "
                 f"of the {n} learners queues one job and reads their jobs through the REST API with their own "
                 "token, and looks at their live page (`minihpc class page`) with the instructor for "
                 f"{result['page']['view_s']} s, each polling it every 2 s as the page does."),
        *table(("what", "median", "samples"),
               [(f"class add {n}", f"{result['add_median_s']} s", ", ".join(map(str, result["add_s"]))),
                ("class remove --all", f"{result['remove_median_s']} s", ", ".join(map(str, result["remove_s"]))),
                ("a learner's GET of their jobs (REST)", f"{result['rest_jobs_get_median_s']} s",
                 f"{n} learners")]),
        "",
        *table(("slurmrestd", "RSS", "container memory"),
               [("idle", f"{result['restd_idle']['rss_kib'] / 1024:.1f} MiB", result["restd_idle"]["container"]),
                (f"after {n} learners' reads, {n} jobs queued, {n + 1} pages polling",
                 f"{result['restd_with_jobs']['rss_kib'] / 1024:.1f} MiB", result["restd_with_jobs"]["container"])]),
        "",
        *table(("the live page", "median", "samples"),
               [("from a learner's sbatch to the job in their page's data", f"{p['refresh_learner_median_s']} s",
                 ", ".join(map(str, p["refresh_learner_s"]))),
                ("... and in the instructor's", f"{p['refresh_instructor_median_s']} s",
                 ", ".join(map(str, p["refresh_instructor_s"]))),
                ("the collector gathering what everyone sees (one cycle)", f"{p['collect_median_s']} s", "10 cycles"),
                (f"a request for the page's data, {p['viewers']} viewers polling", f"{p['request_median_s']} s",
                 f"{p['requests']} requests")]),
        "",
        *table(("the page's process", "RSS"),
               [("the class made, nothing queued, no viewer", f"{p['rss_idle_kib'] / 1024:.1f} MiB"),
                (f"{n} jobs queued, {p['viewers']} viewers polling for {p['view_s']} s",
                 f"{p['rss_viewed_kib'] / 1024:.1f} MiB")]),
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
