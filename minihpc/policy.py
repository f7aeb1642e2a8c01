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

from minihpc.facts import CLUSTER_NAME, LAB_ACCOUNT, LAB_USER, OTHER_ACCOUNT, OTHER_USER

if TYPE_CHECKING:
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


def accounting() -> dict:
    """What cluster/accounting.py makes sacctmgr hold (idempotent)."""
    return {
        "cluster": CLUSTER_NAME,
        "qos": [{"name": q.name, "set": {"Priority": str(q.priority), **q.limits}} for q in QOS],
        "accounts": [{"name": a, "parent": p, "description": d} for a, p, d in ACCOUNTS],
        "users": [{"name": u, "account": a, "qos": qos, "default_qos": qos[0]} for u, a, qos in USERS],
    }
