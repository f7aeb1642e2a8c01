"""The cluster's configuration files, rendered from one Topology and the
local cluster's policy into the run directory (git-ignored):

    <run>/etc/slurm.conf       minihpc/conf/slurm.conf with its node, partition and priority lines
    <run>/etc/gres.conf        the GPU node's stand-in GPUs (minihpc/conf/gres.conf)
    <run>/etc/cgroup.conf      minihpc/conf/cgroup.conf with the release's CgroupPlugin line
    <run>/etc/scratch.env      each node's scratch size, for its health check
    <run>/etc/accounting.json  accounts, users and QOS, applied by slurmdbd
    <run>/compose.nodes.yml    one Compose service per compute node, merged over docker-compose.yml
    <run>/cluster.json         the facts every consumer reads (minihpc.facts)
    <run>/release.env          the Slurm release's base and image tag, for cluster/compose.sh

The etc/ files are mounted read-only at /etc/minihpc/slurm on every node.
The static text lives in the templates; only what the values decide is
generated here, so Compose and slurm.conf can never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

from minihpc import NODES_FILE_NAME, classroom, policy, stacks
from minihpc.facts import CLUSTER_NAME, SCRATCH, Facts
from minihpc.files import write_if_changed
from minihpc.releases import Release, default
from minihpc.topology import DEFAULTS, Topology
from scratch import policy as scratch_policy

TEMPLATES = Path(__file__).resolve().parent / "conf"

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
# Where a GPU node's stand-in devices are: Slurm 24.11 drops a GPU without
# File= from the node's GRES (and drains the node), so each GPU gets a path the
# entrypoint links to /dev/null. Jobs get CUDA_VISIBLE_DEVICES; nothing else.
GPU_DEVICE = "/dev/minihpc-gpu{}"


def _template(name: str, **values: object) -> str:
    # substitute(), not safe_substitute(): a placeholder left unfilled is a bug here, not output.
    text = Template((TEMPLATES / name).read_text()).substitute({k: str(v) for k, v in values.items()})
    return text.rstrip("\n") + "\n"


def node_line(t: Topology, name: str) -> str:
    gres = f" Gres=gpu:{t.gpus}" if name in t.gpu_nodes else ""
    return (f"NodeName={name} NodeAddr={t.addresses[name]} CPUs={t.cpus} RealMemory={t.node_mem(name)} "
            f"TmpDisk={t.scratch_mb}{gres} State=UNKNOWN")


def slurm_conf(t: Topology, tuned: bool = True, release: Release | None = None,
               enforcement: policy.Enforcement | None = None) -> str:
    return _for_release(release or default(), _template(
        "slurm.conf", nodes_n=t.nodes, cpus=t.cpus, mem_mb=t.mem_mb, bigmem_mb=t.bigmem_mb, gpus=t.gpus,
        cluster_name=CLUSTER_NAME, acct_gather_s=ACCT_GATHER_S, **(enforcement or policy.Enforcement()).conf(t),
        throughput=("\n".join(f"{k}={v}" for k, v in THROUGHPUT.items()) if tuned
                    else "# untuned (bench/throughput.py)"),
        scratch=SCRATCH,
        node_lines="\n".join(node_line(t, n) for n in t.names),
        partition_lines="\n".join(p.conf() for p in policy.partitions(t)),
        priority_lines="\n".join(f"{k}={v}" for k, v in policy.PRIORITY.items())))


def _for_release(r: Release, text: str) -> str:
    """slurm.conf as release r reads it: each key r changes (Release.conf) replaced or left out."""
    out = []
    for line in text.splitlines():
        key = line.partition("=")[0]
        if not line.startswith("#") and key in r.conf:
            if r.conf[key]:
                out.append(r.conf[key])
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def cgroup_conf(r: Release) -> str:
    return _template("cgroup.conf", cgroup_plugin=r.cgroup_conf)


def release_env(r: Release, stack: stacks.Stack | None = None) -> str:
    """What cluster/compose.sh needs of the release and the Snakemake stack:
    which base, which pinned Python (cluster/locks/LOCK.lock) and which images."""
    stack = stack or stacks.default()
    return (f"# Written by minihpc (minihpc/configs.py): Slurm {r.packaged} from Debian {r.debian}, "
            f"{stack.describe()}.\n"
            f"SUITE={r.debian}\nBASE_IMAGE={r.base_image}\nLOCK={stack.lock(r.debian)}\n"
            f"RELEASE_TAG={r.tag}{stack.tag}\nRELEASE_PACKAGES='{' '.join(r.packages)}'\n")


def gres_conf(t: Topology) -> str:
    return _template("gres.conf", gpu_lines="\n".join(
        f"NodeName={n} Name=gpu File={GPU_DEVICE.format(i)}" for n in t.gpu_nodes for i in range(t.gpus)))


def compose_nodes(t: Topology, compose_file: Path) -> dict:
    # Absolute: the run directory need not sit beside docker-compose.yml.
    base = str(compose_file.resolve())
    scratch = [scratch_policy.tmpfs(t.scratch_mb)]
    services = {
        name: {"extends": {"file": base, "service": "compute"}, "hostname": name, "scale": 1,
               "tmpfs": scratch, "mem_limit": f"{t.node_mem(name) + CONTAINER_HEADROOM_MB}m"}
        for name in t.names
    }
    services["login"] = {"tmpfs": scratch, "ports": [f"{a}:{t.ssh_port}:22" for a in t.ssh_published]}
    for name, address in t.addresses.items():
        services.setdefault(name, {})["networks"] = {"default": {"ipv4_address": address}}
        if t.cpu_shares != DEFAULTS["CPU_SHARES"]:
            services[name]["cpu_shares"] = t.cpu_shares
    return {"services": services,
            "networks": {"default": {"ipam": {"config": [{"subnet": t.subnet, "gateway": t.gateway}]}}}}


def facts(t: Topology, release: Release | None = None, enforcement: policy.Enforcement | None = None,
          stack: stacks.Stack | None = None) -> Facts:
    e = enforcement or policy.Enforcement()
    s = stack or stacks.default()
    return Facts(slurm=(release or default()).slurm, snakemake=s.snakemake, slurm_plugin=s.slurm_plugin,
                 fs_plugin=s.fs_plugin, enforce=e.names, def_mem_per_cpu=e.mem_per_cpu(t),
                 nodes=t.names, cpus=t.cpus, mem_mb=t.mem_mb, scratch_mb=t.scratch_mb,
                 node_mem_mb={n: t.node_mem(n) for n in t.names}, gpus={n: t.gpus for n in t.gpu_nodes},
                 partitions=[p.name for p in policy.partitions(t)], ssh_port=t.ssh_port,
                 ssh_address=t.ssh_address, subnet=t.subnet, addresses=t.addresses, cpu_shares=t.cpu_shares)


def render(t: Topology, run_dir: Path, compose_file: Path, release: Release | None = None,
           enforcement: policy.Enforcement | None = None, stack: stacks.Stack | None = None) -> bool:
    """Write the cluster's configuration; whether anything Slurm or Compose reads changed."""
    release = release or default()
    etc = run_dir / "etc"
    changed = write_if_changed(etc / "slurm.conf", slurm_conf(t, release=release, enforcement=enforcement))
    changed |= write_if_changed(etc / "cgroup.conf", cgroup_conf(release))
    changed |= write_if_changed(run_dir / "release.env", release_env(release, stack))
    changed |= write_if_changed(etc / "gres.conf", gres_conf(t))
    write_if_changed(etc / "scratch.env", scratch_policy.env_file(t.scratch_mb))
    write_if_changed(etc / "accounting.json", classroom.accounting_json(run_dir))
    nodes = json.dumps(compose_nodes(t, compose_file), indent=2) + "\n"
    changed |= write_if_changed(run_dir / NODES_FILE_NAME, nodes)
    facts(t, release, enforcement, stack).write(run_dir)
    return changed
