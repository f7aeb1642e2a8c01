"""Render the cluster topology from one set of values.

NODES, NODE_CPUS and NODE_MEM_MB (from `minihpc up` or the Makefile) size both
the Compose topology (one service per compute node, c1..cN) and slurm.conf, so
the two can never disagree. Output goes to the run directory (git-ignored):

    <run>/compose.nodes.yml   compute services, merged over docker-compose.yml
    <run>/etc/slurm.conf      mounted read-only at /etc/minihpc/slurm on every node
    <run>/etc/cgroup.conf
    <run>/cluster.json        the facts every consumer reads (minihpc.facts)

SCRATCH_MB sizes each node's scratch: a private tmpfs at /scratch on every
compute node and on the login node, which slurm.conf declares as TmpFS.

Node shapes come from the same values: the last node is the bigmem node
(BIGMEM_MB of RealMemory), the first carries GPUS stand-in GPUs (0: none).
With one node, c1 is both. The partitions, QOS and accounts on top of them are
the cluster's policy (minihpc.policy):

    <run>/etc/gres.conf        the GPU node's stand-in GPUs (File= linked to /dev/null)
    <run>/etc/accounting.json  accounts, users and QOS, applied by slurmdbd
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from minihpc import policy
from minihpc.facts import CLUSTER_NAME, SCRATCH, Facts
from scratch import policy as scratch_policy

MAX_NODES = 16
# The one place the cluster's default shape is written (the CLI's help reads it).
DEFAULTS = {"NODES": 2, "NODE_CPUS": 2, "NODE_MEM_MB": 3000, "BIGMEM_MB": 6000, "GPUS": 2,
            "SCRATCH_MB": scratch_policy.DEFAULT_MB, "SSH_PORT": 2222, "SUBNET": "10.213.0.0/24"}
# Where SUBNET may be: the private ranges (Python's is_private also admits documentation ones).
RFC1918 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
# Each service's fixed host number in SUBNET (.1 is the gateway); compute node
# cN is COMPUTE_BASE + N. Fixed, because Docker hands a freed address to the
# next container that asks: a node cut off or killed and brought back must not
# come back at another node's old address, where slurmctld would still send
# that node's jobs.
SERVICE_HOSTS = {"db": 2, "slurmdbd": 3, "slurmctld": 4, "login": 5}
COMPUTE_BASE = 10


class TopologyError(ValueError):
    """A sizing value that cannot make a working cluster."""


@dataclass(frozen=True)
class Topology:
    nodes: int
    cpus: int
    mem_mb: int
    scratch_mb: int = DEFAULTS["SCRATCH_MB"]
    bigmem_mb: int = DEFAULTS["BIGMEM_MB"]
    gpus: int = DEFAULTS["GPUS"]
    # The login node's sshd, published on the host's loopback only.
    ssh_port: int = DEFAULTS["SSH_PORT"]
    # The cluster's network, every service at a fixed address in it (addresses).
    subnet: str = DEFAULTS["SUBNET"]

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Topology:
        t = cls(
            nodes=_int(env, "NODES", 1, MAX_NODES),
            cpus=_int(env, "NODE_CPUS", 1, 64),
            # Snakemake asks for at least 1000 MB per job: leave room for two.
            mem_mb=_int(env, "NODE_MEM_MB", 2048, 1_048_576),
            scratch_mb=_int(env, "SCRATCH_MB", scratch_policy.MIN_MB, scratch_policy.MAX_MB),
            bigmem_mb=_int(env, "BIGMEM_MB", 2048, 1_048_576),
            gpus=_int(env, "GPUS", 0, 16),
            ssh_port=_int(env, "SSH_PORT", 1024, 65535),
            subnet=_subnet(env),
        )
        if t.bigmem_mb <= t.mem_mb:
            raise TopologyError(f"BIGMEM_MB={t.bigmem_mb} is not above NODE_MEM_MB={t.mem_mb}; the bigmem node "
                                f"must have more memory than the others (e.g. BIGMEM_MB={2 * t.mem_mb})")
        return t

    @classmethod
    def from_facts(cls, f: Facts) -> Topology:
        """The topology a running cluster was rendered from (its cluster.json)."""
        return cls(nodes=len(f.nodes), cpus=f.cpus, mem_mb=f.mem_mb, scratch_mb=f.scratch_mb,
                   bigmem_mb=max(f.node_mem_mb.values()), gpus=max(f.gpus.values(), default=0),
                   ssh_port=f.ssh_port, subnet=f.subnet or DEFAULTS["SUBNET"])

    @property
    def names(self) -> list[str]:
        return [f"c{i}" for i in range(1, self.nodes + 1)]

    @property
    def bigmem_nodes(self) -> list[str]:
        return self.names[-1:]

    @property
    def gpu_nodes(self) -> list[str]:
        return self.names[:1] if self.gpus else []

    @property
    def addresses(self) -> dict[str, str]:
        """Every service's address in the subnet."""
        net = ipaddress.ip_network(self.subnet)
        hosts = {**SERVICE_HOSTS, **{n: COMPUTE_BASE + i for i, n in enumerate(self.names, 1)}}
        return {name: str(net.network_address + h) for name, h in hosts.items()}

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.subnet).network_address + 1)

    def node_mem(self, name: str) -> int:
        return self.bigmem_mb if name in self.bigmem_nodes else self.mem_mb

    def node_line(self, name: str) -> str:
        # NodeAddr: slurmctld reaches a node at its fixed address. By name it asks
        # Docker's DNS, which forgets a killed or cut-off node; slurmctld then
        # retries the lookup for seconds at a time, and sbatch times out meanwhile.
        gres = f" Gres=gpu:{self.gpus}" if name in self.gpu_nodes else ""
        return (f"NodeName={name} NodeAddr={self.addresses[name]} CPUs={self.cpus} RealMemory={self.node_mem(name)} "
                f"TmpDisk={self.scratch_mb}{gres} State=UNKNOWN")


def _int(env: dict[str, str], key: str, lo: int, hi: int) -> int:
    default = DEFAULTS[key]
    raw = env.get(key, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise TopologyError(f"{key}={raw!r} is not a whole number; use e.g. {key}={default}") from None
    if not lo <= value <= hi:
        raise TopologyError(f"{key}={value} is out of range; allowed {lo} to {hi} (e.g. {key}={default})")
    return value


def _subnet(env: dict[str, str]) -> str:
    raw = env.get("SUBNET", "").strip() or DEFAULTS["SUBNET"]
    example = f"e.g. SUBNET={DEFAULTS['SUBNET']}"
    try:
        net = ipaddress.ip_network(raw)
    except ValueError:
        raise TopologyError(f"SUBNET={raw!r} is not an IPv4 network with its host bits zero; {example}") from None
    last = COMPUTE_BASE + MAX_NODES
    private = any(net.version == 4 and net.subnet_of(ipaddress.ip_network(p)) for p in RFC1918)
    if not private or net.num_addresses < last + 2:
        raise TopologyError(f"SUBNET={raw} must be a private (RFC 1918) IPv4 network of at least {last + 2} addresses "
                            f"(a /{32 - (last + 1).bit_length()} or larger); {example}")
    return str(net)


# Seconds between samples of a step's memory (what OverMemoryKill acts on).
ACCT_GATHER_S = 2
# Each compute container may use this much above the node's RealMemory (for
# slurmd, slurmstepd and the NFS client), so a job over its request is killed
# by Slurm's poll before the kernel's OOM killer picks anything in the container.
CONTAINER_HEADROOM_MB = 1024


# Many short jobs, as Slurm's high-throughput guide tunes for them (measured
# by bench/throughput.py, which also renders the untuned file to compare).
# An Epilog makes slurmd report each job's end with an epilog-complete
# message, on which slurmctld schedules at once; without one, the freed CPUs
# wait for the next pass of slurmctld's background loop (batch_sched_delay, 3 s).
THROUGHPUT = {
    "Epilog": "/usr/local/sbin/minihpc-epilog",
}


def slurm_conf(t: Topology, tuned: bool = True) -> str:
    nodes = "\n".join(t.node_line(n) for n in t.names)
    throughput = "\n".join(f"{k}={v}" for k, v in THROUGHPUT.items()) if tuned else "# untuned (bench/throughput.py)"
    parts = "\n".join(p.conf() for p in policy.partitions(t))
    priority = "\n".join(f"{k}={v}" for k, v in policy.PRIORITY.items())
    return f"""\
# Generated by minihpc/topology.py from NODES={t.nodes} NODE_CPUS={t.cpus} NODE_MEM_MB={t.mem_mb}
# BIGMEM_MB={t.bigmem_mb} GPUS={t.gpus}, and the site's partitions and priority (minihpc/policy.py).
# Do not edit: change the values with make cluster-up NODES=... instead.
ClusterName={CLUSTER_NAME}
SlurmctldHost=slurmctld
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
# Unprivileged containers: no cgroup tracking, no CPU binding (task/affinity
# fails with EPERM and drains the node).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Memory as a site enforces it, without cgroups: every step's processes are
# sampled from /proc every {ACCT_GATHER_S} s (sacct's MaxRSS/AveRSS), and a step
# whose RSS exceeds its request is killed ("Exceeded job memory limit").
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task={ACCT_GATHER_S}
JobAcctGatherParams=OverMemoryKill
# A job without --mem gets this much per CPU (of a standard node), not the whole node.
DefMemPerCPU={t.mem_mb // t.cpus}
PropagateResourceLimits=NONE
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
{throughput}
# Accounting through slurmdbd: the Snakemake plugin polls sacct and validates
# the account with sacctmgr; the comment carries rule_<name>.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=slurmdbd
# Associations, their limits and QOS enforced, as a site does (minihpc/policy.py).
AccountingStorageEnforce=associations,limits,qos
# GPUs are GRES with stand-in device files (gres.conf): --gpus/--gres are scheduled and accounted.
GresTypes=gpu
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
# The declared node size is trusted; containers see the host's cores.
SlurmdParameters=config_overrides
ReturnToService=2
# A site's node health check (cluster/nodecheck.sh), at slurmd's start and every
# 15 s: drains a node whose scratch is not what the topology declares.
# Each job's scratch directory, /scratch/<user>/job-<id>, made by root and the
# user's alone before the job starts (cluster/scratchdir.py).
Prolog=/usr/local/sbin/minihpc-scratchdir
HealthCheckProgram=/usr/local/sbin/minihpc-nodecheck
HealthCheckInterval=15
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldDebug=info
SlurmdDebug=info
# Node-local scratch (a tmpfs per node): jobs may ask for it with --tmp.
TmpFS={SCRATCH}
{nodes}
# A request beyond a partition's limits is refused at submission, as most sites
# do, instead of pending forever.
EnforcePartLimits=ALL
{parts}
{priority}
"""


# Where a GPU node's stand-in devices are: Slurm 24.11 drops a GPU without
# File= from the node's GRES (and drains the node), so each GPU gets a path the
# entrypoint links to /dev/null. Jobs get CUDA_VISIBLE_DEVICES; nothing else.
GPU_DEVICE = "/dev/minihpc-gpu{}"


def gres_conf(t: Topology) -> str:
    lines = [f"NodeName={n} Name=gpu File={GPU_DEVICE.format(i)}" for n in t.gpu_nodes for i in range(t.gpus)]
    return ("# Generated by minihpc/topology.py: stand-in GPUs, one line each (the entrypoint links File= to\n"
            "# /dev/null on the node).\n" + "".join(f"{x}\n" for x in lines))


CGROUP_CONF = """\
# Generated by minihpc/topology.py. Containers get no cgroup control.
CgroupPlugin=disabled
"""


def compose_nodes(t: Topology, compose_file: Path) -> dict:
    # Absolute: the run directory need not sit beside docker-compose.yml.
    base = str(compose_file.resolve())
    scratch = [scratch_policy.tmpfs(t.scratch_mb)]
    services = {
        name: {"extends": {"file": base, "service": "compute"}, "hostname": name, "scale": 1,
               "tmpfs": scratch, "mem_limit": f"{t.node_mem(name) + CONTAINER_HEADROOM_MB}m"}
        for name in t.names
    }
    services["login"] = {"tmpfs": scratch, "ports": [f"127.0.0.1:{t.ssh_port}:22"]}
    for name, address in t.addresses.items():
        services.setdefault(name, {})["networks"] = {"default": {"ipv4_address": address}}
    return {"services": services,
            "networks": {"default": {"ipam": {"config": [{"subnet": t.subnet, "gateway": t.gateway}]}}}}


def write_if_changed(path: Path, text: str) -> bool:
    """Write in place (bind mounts see the same inode); report whether it changed."""
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write(text)
    return True


def facts(t: Topology) -> Facts:
    return Facts(nodes=t.names, cpus=t.cpus, mem_mb=t.mem_mb, scratch_mb=t.scratch_mb,
                 node_mem_mb={n: t.node_mem(n) for n in t.names}, gpus={n: t.gpus for n in t.gpu_nodes},
                 partitions=[p.name for p in policy.partitions(t)], ssh_port=t.ssh_port,
                 subnet=t.subnet, addresses=t.addresses)


def render(t: Topology, run_dir: Path, compose_file: Path) -> bool:
    """Write the cluster's configuration; whether anything Slurm reads changed."""
    changed = write_if_changed(run_dir / "etc" / "slurm.conf", slurm_conf(t))
    changed |= write_if_changed(run_dir / "etc" / "cgroup.conf", CGROUP_CONF)
    changed |= write_if_changed(run_dir / "etc" / "gres.conf", gres_conf(t))
    write_if_changed(run_dir / "etc" / "scratch.env", scratch_policy.env_file(t.scratch_mb))
    write_if_changed(run_dir / "etc" / "accounting.json", json.dumps(policy.accounting(), indent=1) + "\n")
    nodes = json.dumps(compose_nodes(t, compose_file), indent=2) + "\n"
    changed |= write_if_changed(run_dir / "compose.nodes.yml", nodes)
    facts(t).write(run_dir)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="minihpc.topology", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--compose-file", type=Path, required=True)
    ap.add_argument("--print-nodes", action="store_true", help="print the node names and exit")
    args = ap.parse_args(argv)
    try:
        t = Topology.from_env(dict(os.environ))
    except TopologyError as e:
        print(f"topology: error: {e}", file=sys.stderr)
        return 2
    if args.print_nodes:
        print(" ".join(t.names))
        return 0
    changed = render(t, args.run_dir, args.compose_file.resolve())
    print("changed" if changed else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
