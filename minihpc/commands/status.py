"""minihpc status: service health, nodes, partitions, QOS, the queue and the NFS profile."""

from __future__ import annotations

import argparse
import sys

from minihpc import NAME, RUN_DIR, releases
from minihpc.cluster import Cluster
from minihpc.commands.common import compose, require_state
from minihpc.errors import MinihpcError
from minihpc.facts import Facts
from minihpc.ready import service_health
from minihpc.transport import containers


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="service health, nodes, queue and the NFS profile")
    p.set_defaults(run=status)


# What `status` shows of each partition and QOS: (heading, field).
PARTITION_COLUMNS = [("PARTITION", "PartitionName"), ("DEFAULT", "Default"), ("NODES", "Nodes"),
                     ("DEFAULTTIME", "DefaultTime"), ("MAXTIME", "MaxTime"), ("MAXMEM/NODE", "MaxMemPerNode"),
                     ("TRES", "TRES")]
NODE_COLUMNS = [("NODE", "node"), ("STATE", "state"), ("CPUS", "cpus"), ("MEMORY", "mem"), ("GRES", "gres"),
                ("PARTITIONS", "partitions")]
QOS_COLUMNS = [("QOS", "Name"), ("PRIORITY", "Priority"), ("MAXWALL", "MaxWall"), ("MAXJOBS/USER", "MaxJobsPU"),
               ("MAXSUBMIT/USER", "MaxSubmitPU"), ("FLAGS", "Flags")]


def table(rows: list[dict[str, str]], columns: list[tuple[str, str]]) -> str:
    cells = [[h for h, _ in columns], *([r.get(k, "") or "-" for _, k in columns] for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def site_lines(f: Facts) -> str:
    """The cluster's Slurm and what it enforces, and what that release cannot give that the default does."""
    r = releases.named(f.slurm)
    lines = [f"Slurm {r.packaged} (Debian {r.debian_version}, {r.debian}; Python {r.python}); {f.stack.describe()}; "
             f"enforcing: {', '.join(f.enforce) or 'no limits'}; a job without --mem gets {f.def_mem_per_cpu} MiB "
             "per CPU"]
    lines += [f"  not on this release: {what} ({why})" for what, why in r.lacks]
    return "\n".join(lines)


def status(a: argparse.Namespace) -> int:
    require_state()
    # Each service's healthcheck run now (Docker's own column would show its last probe, up to 30 s old).
    print(table([{"service": s, "health": h} for s, h in sorted(service_health().items())],
                [("SERVICE", "service"), ("HEALTH", "health")]))
    client = Cluster.local()
    f, login = client.facts, client.facts.login
    others = [n for n in containers.clusters() if n != NAME]
    print(f"\ncluster {NAME} (state {RUN_DIR}; ssh -p {f.ssh_port} {f.lab_user}@127.0.0.1; subnet {f.subnet})"
          + (f"; other minihpc clusters here: {', '.join(others)} (MINIHPC_CLUSTER=NAME)" if others else ""))
    print(f"\n{site_lines(f)}")
    try:
        print(f"\n{table(client.nodes(), NODE_COLUMNS)}\n\n{table(client.partitions(), PARTITION_COLUMNS)}"
              f"\n\n{table(client.qos(), QOS_COLUMNS)}")
    except MinihpcError as e:
        print(f"status: {e}", file=sys.stderr)
    for cmd in (["sacctmgr", "-n", "show", "assoc", "tree", "format=Account%-14,User%-9,QOS%-18,DefaultQOS"],
                ["squeue", "-o", "%.7i %.9P %.12j %.8u %.8a %.7q %.2t %.10M %.5D %R"], ["minihpc-nfs", "show"]):
        print()
        compose("exec", "-T", login, *cmd, check=False)
    return 0
