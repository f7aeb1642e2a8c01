"""A busy shared cluster: another user's background load, bounded in time.

The other lab user (alice, account genomics) submits one job array of short
tasks in her group's `high` QOS (minihpc.policy), throttled so that it holds
all the cluster's CPUs but LEAVE of them for as long as asked. Her next task
outranks anything the lab user queues, so the lab user's jobs get the CPUs
left over and pend meanwhile with reasons Resources and Priority, as on a
real site on a Monday morning. sbatch's --deadline removes whatever of the
load is still queued when the time is up, so a forgotten load ends by itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from minihpc.cluster import Cluster, parse_sacct
from minihpc.errors import BadInput, MinihpcError

JOB_NAME = "minihpc-busy"
QOS = "high"
TASK_S = 20
TASK_MEM_MB = 100
MAX_MINUTES = 240
# Every task counts against the QOS's MaxSubmitJobsPerUser (and MaxArraySize): longer loads get longer tasks.
MAX_TASKS = 1000


@dataclass(frozen=True)
class Load:
    job_id: str
    tasks: int
    task_s: int
    cpus: int
    minutes: float


def plan(cluster: Cluster, minutes: float, leave: int) -> tuple[int, int, int]:
    """(CPUs the load holds, tasks, seconds per task), or bad input before anything is queued."""
    f = cluster.facts
    capacity = f.total_cpus
    if not 0 < minutes <= MAX_MINUTES:
        raise BadInput(f"--minutes {minutes:g} is out of range", f"give more than 0 and at most {MAX_MINUTES}")
    if not 0 <= leave < capacity:
        raise BadInput(f"--leave {leave} leaves the load no CPU of the cluster's {capacity}",
                       f"give 0 to {capacity - 1} (CPUs left for everyone else)")
    cpus = capacity - leave
    task_s = max(TASK_S, math.ceil(minutes * 60 * cpus / MAX_TASKS))
    return cpus, cpus * math.ceil(minutes * 60 / task_s), task_s


def start(cluster: Cluster, minutes: float, leave: int = 1) -> Load:
    """Queue the load as the other user; refuse if one is already queued."""
    cpus, tasks, task_s = plan(cluster, minutes, leave)
    f = cluster.facts
    if running(cluster):
        raise MinihpcError(f"a background load of {f.other_user}'s is already queued",
                           "stop it first: minihpc busy stop")
    # Each task's limit leaves room to start late; the deadline ends the whole load.
    limit = math.ceil(task_s / 60) + 1
    r = cluster.sh(f"sbatch --parsable -J {JOB_NAME} -A {f.other_account} --qos={QOS} -c 1 --mem={TASK_MEM_MB} "
                   f"-t {limit} --deadline=now+{math.ceil(minutes) + limit}minutes "
                   f"--array=0-{tasks - 1}%{cpus} -o /dev/null --wrap 'sleep {task_s}'",
                   user=f.other_user, workdir="/tmp")
    if r.rc != 0:
        raise MinihpcError(f"sbatch of the load failed: {r.out.strip()[-300:]}", "see minihpc status")
    return Load(r.out.strip().splitlines()[-1].split(";")[0], tasks, task_s, cpus, minutes)


def running(cluster: Cluster) -> list[dict[str, str]]:
    """The load's queued and running tasks (squeue), one dict each."""
    fields = ("JobID", "State", "Reason", "NodeList")
    # As their owner: each user sees only their own jobs (PrivateData).
    r = cluster.sh(f"squeue -h -u {cluster.facts.other_user} -n {JOB_NAME} -r -o '%i|%T|%r|%N'",
                   user=cluster.facts.other_user)
    if r.rc != 0:
        raise MinihpcError(f"squeue failed: {r.out.strip()}", "is the cluster up? minihpc status")
    return parse_sacct(r.out, fields)


def stop(cluster: Cluster, timeout: float = 90) -> int:
    """Cancel the load and wait until its tasks are gone: a cancelled task
    stays COMPLETING until its epilog has run, and holds its CPU meanwhile.
    How many of its tasks were queued or running."""
    n = len(running(cluster))
    f = cluster.facts
    r = cluster.sh(f"scancel -u {f.other_user} -n {JOB_NAME}", user=f.other_user)
    if r.rc != 0:
        raise MinihpcError(f"scancel failed: {r.out.strip()}", "see minihpc status")
    deadline = time.monotonic() + timeout
    while (left := running(cluster)) and time.monotonic() < deadline:
        time.sleep(1)
    if left:
        raise MinihpcError(f"{len(left)} task(s) of the load still there {timeout:.0f} s after scancel: "
                           + ", ".join(f"{t['JobID']} {t['State']}" for t in left[:5]), "see minihpc status")
    return n
