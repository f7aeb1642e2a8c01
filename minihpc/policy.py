"""The local cluster's policy, written once: its partitions and the nodes
each holds, its QOS and their per-user limits, its account tree and users,
and how job priority is computed, as a site enforces them. (A remote SLURM
site is minihpc.sitefile's Site, checked by minihpc.sitecheck.)

minihpc.topology renders slurm.conf's partition and priority lines from here,
and <run>/etc/accounting.json, which the slurmdbd container applies with
sacctmgr (cluster/accounting.py). The lab, the profiles' tests, the demos and
`minihpc status` read the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from minihpc.errors import BadInput
from minihpc.facts import CLUSTER_NAME, LAB_ACCOUNT, LAB_USER, OTHER_ACCOUNT, OTHER_USER, Facts

if TYPE_CHECKING:
    from collections.abc import Sequence

    from minihpc.topology import Topology

# A job without --time runs at most its partition's DefaultTime.
DEFAULT_TIME = "01:00:00"


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: list[str]
    max_time: str
    # None: a job may use all of a node's RealMemory.
    max_mem_per_node: int | None
    default: bool = False
    default_time: str = DEFAULT_TIME

    def conf(self) -> str:
        mem = f" MaxMemPerNode={self.max_mem_per_node}" if self.max_mem_per_node else ""
        return (f"PartitionName={self.name} Nodes={','.join(self.nodes)} Default={'YES' if self.default else 'NO'} "
                f"DefaultTime={self.default_time} MaxTime={self.max_time}{mem} State=UP")


def partitions(t: Topology) -> list[Partition]:
    """short is the default; bigmem and gpu hold only the nodes that have
    them. short and long cap memory at a standard node's, so a job that needs
    more must say bigmem."""
    std = t.mem_mb
    parts = [
        Partition("short", t.names, "04:00:00", std, default=True),
        Partition("long", t.names, "7-00:00:00", std),
        Partition("bigmem", t.bigmem_nodes, "1-00:00:00", None),
    ]
    if t.gpus:  # jobs ask with --gpus=N or --gres=gpu:N (the plugin's gpu and gres resources)
        parts.append(Partition("gpu", t.gpu_nodes, "1-00:00:00", std))
    return parts


# What a site may enforce or not (minihpc up --enforce), and what enforcing it does.
ENFORCEABLE = {
    "memory": "a step whose RSS exceeds its --mem is killed (JobAcctGatherParams=OverMemoryKill)",
    "time": "a job past its time limit is ended TIMEOUT (OverTimeLimit=0; off: OverTimeLimit=UNLIMITED)",
}


@dataclass(frozen=True)
class Enforcement:
    """What this cluster enforces, as a site chooses: memory and time limits
    (both on by default; a site without them runs jobs past their requests),
    and the memory a job gets per CPU when it asks for none (None: a
    standard node's memory over its CPUs)."""

    memory: bool = True
    time: bool = True
    def_mem_per_cpu: int | None = None

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Enforcement:
        raw = env.get("ENFORCE", "").strip()
        names = [] if raw == "none" else [n.strip() for n in (raw or ",".join(ENFORCEABLE)).split(",")]
        unknown = [n for n in names if n and n not in ENFORCEABLE]
        if unknown or not all(names) or len(set(names)) != len(names):
            raise BadInput(f"--enforce {raw!r}: {', '.join(map(repr, unknown)) or 'an empty or repeated name'} is not "
                           "something minihpc enforces",
                           f"give a comma-separated list of {', '.join(ENFORCEABLE)}, or none (the default: "
                           f"{','.join(ENFORCEABLE)})")
        mem = env.get("DEF_MEM_PER_CPU", "").strip()
        if mem and not (mem.isdigit() and 100 <= int(mem) <= 1_048_576):
            raise BadInput(f"--def-mem-per-cpu {mem!r} is not a whole number of MiB from 100 to 1048576",
                           "give e.g. --def-mem-per-cpu 1000, or leave it out (a standard node's memory over its CPUs)")
        return cls(memory="memory" in names, time="time" in names, def_mem_per_cpu=int(mem) if mem else None)

    @classmethod
    def from_facts(cls, f: Facts) -> Enforcement:
        """What a running cluster was brought up enforcing (its facts)."""
        return cls(memory="memory" in f.enforce, time="time" in f.enforce, def_mem_per_cpu=f.def_mem_per_cpu or None)

    @property
    def names(self) -> list[str]:
        return [n for n in ENFORCEABLE if getattr(self, n)]

    def mem_per_cpu(self, t: Topology) -> int:
        return self.def_mem_per_cpu or t.mem_mb // t.cpus

    def conf(self, t: Topology) -> dict[str, str]:
        """slurm.conf's enforcement lines, by template placeholder."""
        return {
            "memory_enforcement": ("JobAcctGatherParams=OverMemoryKill" if self.memory else
                                   "# Not enforced here (minihpc up --enforce): a step may use more than its --mem."),
            "time_enforcement": ("OverTimeLimit=0" if self.time else
                                 "# Not enforced here (minihpc up --enforce): a job runs past its time limit.\n"
                                 "OverTimeLimit=UNLIMITED"),
            "def_mem_per_cpu": str(self.mem_per_cpu(t)),
        }


def default_partition(t: Topology) -> Partition:
    return next(p for p in partitions(t) if p.default)


@dataclass(frozen=True)
class Qos:
    name: str
    priority: int
    limits: dict[str, str]


# sacctmgr's names for the limits (MaxSubmitJobsPerUser refuses at sbatch,
# MaxJobsPerUser keeps the rest PENDING with reason QOSMaxJobsPerUserLimit).
QOS = [
    # Everyone's default: at most 1000 queued jobs per user.
    Qos("normal", 0, {"MaxSubmitJobsPerUser": "1000"}),
    # Jumps the queue, but one running and two queued jobs per user, an hour
    # each; DenyOnLimit refuses a longer job at sbatch instead of leaving it pending.
    Qos("debug", 100, {"MaxJobsPerUser": "1", "MaxSubmitJobsPerUser": "2", "MaxWall": DEFAULT_TIME,
                       "Flags": "DenyOnLimit"}),
    # A research group's bought priority: above normal, below debug; only its users may use it.
    Qos("high", 50, {"MaxSubmitJobsPerUser": "1000"}),
]
DEFAULT_QOS = "normal"

# The account tree: (account, parent, description). The lab user works in
# `lab` (teaching); another user's jobs come from `genomics` (research).
ACCOUNTS = [
    ("teaching", "root", "courses"),
    (LAB_ACCOUNT, "teaching", "the minihpc lab"),
    ("research", "root", "research groups"),
    (OTHER_ACCOUNT, "research", "another group sharing the cluster"),
]
# A class's learners' account (minihpc.classroom), under teaching, made with the first learner.
CLASS_ACCOUNT = "class"
# Each user, their account and the QOS they may use (the first is their default).
USERS = [(LAB_USER, LAB_ACCOUNT, [DEFAULT_QOS, "debug"]), (OTHER_USER, OTHER_ACCOUNT, [DEFAULT_QOS, "debug", "high"])]

# Multifactor priority: QOS dominates, then fair share, then age (the
# longer a job waits the higher it climbs, up to PriorityMaxAge).
PRIORITY = {
    "PriorityType": "priority/multifactor",
    "PriorityWeightQOS": 10000,
    "PriorityWeightFairshare": 5000,
    "PriorityWeightAge": 1000,
    "PriorityMaxAge": "1-00:00:00",
    "PriorityDecayHalfLife": "1-00:00:00",
    "PriorityCalcPeriod": 1,
}


def accounting(learners: Sequence[str] = ()) -> dict:
    """What cluster/accounting.py makes sacctmgr hold (idempotent): the
    site's users, and a class's learners (minihpc.classroom) under an account
    of their own, with the lab user's QOS (fair share among them: one share each)."""
    accounts = [*ACCOUNTS, *([(CLASS_ACCOUNT, "teaching", "a class's learners")] if learners else [])]
    users = [*USERS, *((name, CLASS_ACCOUNT, USERS[0][2]) for name in learners)]
    return {
        "cluster": CLUSTER_NAME,
        "qos": [{"name": q.name, "set": {"Priority": str(q.priority), **q.limits}} for q in QOS],
        "accounts": [{"name": a, "parent": p, "description": d} for a, p, d in accounts],
        "users": [{"name": u, "account": a, "qos": qos, "default_qos": qos[0]} for u, a, qos in users],
    }
