"""up, down, destroy, status, shell, logs: the cluster's life."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from minihpc import ROOT, RUN_DIR, tree_env
from minihpc.cluster import Cluster
from minihpc.commands.common import compose, confirm, env_int, exec_compose
from minihpc.errors import BadInput, MinihpcError
from minihpc.facts import CLUSTER_NAME, Facts
from minihpc.network import check_subnet
from minihpc.topology import DEFAULTS, MAX_NODES, Topology, TopologyError

READY_TIMEOUT = 180
# up's sizing flags: the environment knob each overrides, and what it sizes.
UP_KNOBS = {"nodes": ("NODES", f"compute nodes c1..cN, 1 to {MAX_NODES}"),
            "cpus": ("NODE_CPUS", "CPUs each node declares"),
            "mem_mb": ("NODE_MEM_MB", "RealMemory each standard node declares, MiB"),
            "bigmem_mb": ("BIGMEM_MB", "RealMemory of the bigmem node (the last), MiB"),
            "gpus": ("GPUS", "stand-in GPUs on the gpu node (the first), 0 for none"),
            "scratch_mb": ("SCRATCH_MB", "each node's private /scratch, MiB"),
            "ssh_port": ("SSH_PORT", "the login node's sshd, published on 127.0.0.1"),
            "timeout": ("READY_TIMEOUT", "seconds to wait until every node is ready")}


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="bring the cluster up (or resize it) and wait until it is ready",
                       description="Bring the cluster up, or resize a running one, and return when every node is "
                                   "idle and sacct answers. Defaults come from NODES, NODE_CPUS, NODE_MEM_MB, "
                                   "BIGMEM_MB, GPUS, SCRATCH_MB, SSH_PORT, SUBNET, NFS_PROFILE and READY_TIMEOUT "
                                   "in the environment.")
    for flag, (name, what) in UP_KNOBS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", type=int, default=None,
                       help=f"{what} (default {DEFAULTS.get(name, READY_TIMEOUT)}; env {name})")
    p.add_argument("--subnet", default=None,
                   help=f"the cluster's private IPv4 network, each service at a fixed address in it (default "
                        f"{DEFAULTS['SUBNET']}; env SUBNET)")
    p.add_argument("--nfs-profile", default=None, help="NFS client profile to set (see minihpc nfs list)")
    p.set_defaults(run=up)

    p = sub.add_parser("down", help="stop the cluster; keep its data and secrets")
    p.set_defaults(run=down)

    p = sub.add_parser("destroy", help="remove containers, volumes and secrets (images are kept)")
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.set_defaults(run=destroy)

    p = sub.add_parser("status", help="service health, nodes, queue and the NFS profile")
    p.set_defaults(run=status)

    p = sub.add_parser("shell", help="a login shell on the login node as the lab user")
    p.set_defaults(run=shell)

    p = sub.add_parser("logs", help="follow the services' logs")
    p.add_argument("service", nargs="?", help="one service (e.g. slurmctld, c1); default all")
    p.set_defaults(run=logs)


def up(a: argparse.Namespace) -> int:
    env = dict(os.environ)
    for flag, (name, _) in UP_KNOBS.items():
        if getattr(a, flag) is not None:
            env[name] = str(getattr(a, flag))
    if a.subnet is not None:
        env["SUBNET"] = a.subnet
    try:  # validate everything before anything starts
        topology = Topology.from_env(env)
    except TopologyError as e:
        raise BadInput(str(e)) from None
    env["READY_TIMEOUT"] = str(env_int("READY_TIMEOUT", READY_TIMEOUT, env))
    if int(env["READY_TIMEOUT"]) < 10:
        raise BadInput(f"--timeout {env['READY_TIMEOUT']} is too short", "give the cluster at least 10 s")
    profile = a.nfs_profile if a.nfs_profile is not None else env.get("NFS_PROFILE", "")
    if profile:
        from nfs.profiles import ProfileError, named
        try:
            named(profile)
        except ProfileError as e:
            raise BadInput(str(e)) from None
    env["NFS_PROFILE"] = profile
    env["MINIHPC_PYTHON"] = sys.executable
    other = _other_cluster()
    if other:
        state = Path(other).parent.parent
        raise MinihpcError(f"a minihpc cluster made from another state directory is on this machine ({state})",
                           f"one cluster per machine: remove it with MINIHPC_STATE_DIR={state} minihpc destroy "
                           f"--yes, or use it with MINIHPC_STATE_DIR={state}")
    check_subnet(topology)
    rc = subprocess.run([str(ROOT / "cluster/up.sh")], env=tree_env(env), check=False).returncode
    if rc != 0:
        raise MinihpcError(f"bring-up failed (exit {rc})", "see the lines above; minihpc logs shows every service")
    return 0


def _other_cluster() -> str | None:
    """The compose.nodes.yml of a minihpc cluster (running or stopped) that
    another run directory made, if any: Compose's own labels say which."""
    try:
        r = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={CLUSTER_NAME}",
                            "--format", '{{.Label "com.docker.compose.project.config_files"}}'],
                           capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:  # no engine yet: up.sh starts one, and then nothing is there
        return None
    ours = str(RUN_DIR / "compose.nodes.yml")
    for files in set(r.stdout.split()):
        nodes = [f for f in files.split(",") if f.endswith("/compose.nodes.yml")]
        if nodes and ours not in nodes:
            return nodes[0]
    return None


def down(a: argparse.Namespace) -> int:
    if not (RUN_DIR / "compose.nodes.yml").exists():
        print(f"down: no cluster state in {RUN_DIR} (nothing to stop)")
        return 0
    return compose("down", "--remove-orphans")


def destroy(a: argparse.Namespace) -> int:
    confirm("remove the cluster's containers, volumes (accounting database, shared files) and secrets?", a.yes)
    if (RUN_DIR / "compose.nodes.yml").exists():
        compose("down", "--remove-orphans", "--volumes")
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    print(f"destroyed: containers, volumes and {RUN_DIR} removed (images kept)")
    return 0


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


def status(a: argparse.Namespace) -> int:
    compose("ps", "--format", "table {{.Service}}\t{{.State}}\t{{.Status}}")
    client = Cluster.local()
    login = client.facts.login
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


def shell(a: argparse.Namespace) -> int:
    f = Facts.read(RUN_DIR)
    exec_compose("exec", "-u", f.lab_user, "-w", f"/home/{f.lab_user}", f.login, "bash", "-l")
    return 0


def logs(a: argparse.Namespace) -> int:
    exec_compose("logs", "-f", "--tail", "50", *([a.service] if a.service else []))
    return 0
