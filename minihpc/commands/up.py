"""minihpc up: bring the cluster up, or resize a running one (minihpc.bringup does it)."""

from __future__ import annotations

import argparse
import os

from minihpc import bringup, policy, releases, stacks
from minihpc.commands.classroom import added, count_arg
from minihpc.topology import DEFAULTS, MAX_NODES

# up's sizing flags: the environment knob each overrides, and what it sizes.
UP_KNOBS = {"nodes": ("NODES", f"compute nodes c1..cN, 1 to {MAX_NODES}"),
            "cpus": ("NODE_CPUS", "CPUs each node declares"),
            "mem_mb": ("NODE_MEM_MB", "RealMemory each standard node declares, MiB"),
            "bigmem_mb": ("BIGMEM_MB", "RealMemory of the bigmem node (the last), MiB; twice NODE_MEM_MB unless "
                                       "given"),
            "gpus": ("GPUS", "stand-in GPUs on the gpu node (the first), 0 for none"),
            "scratch_mb": ("SCRATCH_MB", "each node's private /scratch, MiB"),
            "ssh_port": ("SSH_PORT", "the login node's sshd's published port"),
            "cpu_shares": ("CPU_SHARES", "the containers' CPU weight against other work when the CPUs are contended "
                                         "(Docker's cpu_shares, 2 to 1024: a cluster at 128 beside one at 1024 gets "
                                         "an eighth as much)"),
            "timeout": ("READY_TIMEOUT", "seconds to wait until every node is ready")}


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="bring the cluster up (or resize it) and wait until it is ready",
                       description="Bring the cluster up, or resize a running one, and return when every node is "
                                   "idle and sacct answers. Defaults come from NODES, NODE_CPUS, NODE_MEM_MB, "
                                   "BIGMEM_MB, GPUS, SCRATCH_MB, SSH_PORT, SSH_ADDRESS, PUBLISH_SSH, CPU_SHARES, "
                                   "SUBNET, NFS_PROFILE, ENFORCE, "
                                   "DEF_MEM_PER_CPU, SLURM_RELEASE, SNAKEMAKE_VERSION, SLURM_PLUGIN_VERSION, "
                                   "FS_PLUGIN_VERSION and READY_TIMEOUT "
                                   "in the environment. Each step says what it did; a failing one names itself.")
    for flag, (name, what) in UP_KNOBS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", type=int, default=None,
                       help=f"{what} (default {DEFAULTS.get(name, bringup.READY_TIMEOUT)}; env {name})")
    p.add_argument("--subnet", default=None,
                   help=f"the cluster's private IPv4 network, each service at a fixed address in it (default "
                        f"{DEFAULTS['SUBNET']}; env SUBNET)")
    p.add_argument("--ssh-address", default=None, metavar="ADDRESS",
                   help=f"where the login node's sshd is published (default {DEFAULTS['SSH_ADDRESS']}, this machine "
                        "only; env SSH_ADDRESS); another needs --publish-ssh")
    p.add_argument("--publish-ssh", action="store_true",
                   help="confirm publishing sshd on a --ssh-address beyond loopback (env PUBLISH_SSH=yes)")
    p.add_argument("--nfs-profile", default=None, help="NFS client profile to set (see minihpc nfs list)")
    p.add_argument("--enforce", metavar="LIMITS", default=None,
                   help="what the site enforces, comma-separated, or none: "
                        + "; ".join(f"{k}: {v}" for k, v in policy.ENFORCEABLE.items())
                        + f" (default {','.join(policy.ENFORCEABLE)}; env ENFORCE)")
    p.add_argument("--def-mem-per-cpu", metavar="MB", default=None,
                   help="memory per CPU of a job that asks for none, MiB (default: a standard node's memory over its "
                        "CPUs; env DEF_MEM_PER_CPU)")
    p.add_argument("--slurm", metavar="RELEASE", default=None,
                   help="the Slurm release, built from its Debian release's packages: "
                        + ", ".join(f"{r.slurm} ({r.packaged}, Debian {r.debian_version})"
                                    for r in releases.RELEASES.values())
                        + f" (default {releases.DEFAULT}, or the running cluster's; env SLURM_RELEASE)")
    add_stack_flags(p)
    p.add_argument("--learners", metavar="N", type=count_arg, default=None,
                   help="then a class of N learners on it (as minihpc class add N does)")
    p.set_defaults(run=up)


def add_stack_flags(p: argparse.ArgumentParser) -> None:
    """--snakemake, --slurm-plugin, --fs-plugin: the pinned set (minihpc.stacks) holding every version given."""
    sets = "; ".join(s.describe() for s in stacks.STACKS)
    for flag, name in bringup.STACK_KNOBS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", metavar="VERSION", default=None,
                       help=f"pick the pinned Snakemake set with this version (env {name}); the sets: {sets}"
                       if flag == "snakemake" else f"the same, by this plugin's version (env {name})")


# up's other flags given as text: the environment knob each overrides.
TEXT_KNOBS = {"slurm": "SLURM_RELEASE", "enforce": "ENFORCE", "def_mem_per_cpu": "DEF_MEM_PER_CPU"}


def given(a: argparse.Namespace, env: dict[str, str], knobs: dict[str, str] = bringup.STACK_KNOBS) -> dict[str, str]:
    """env with each flag given (by its attribute) set as its knob."""
    for flag, name in knobs.items():
        if getattr(a, flag) is not None:
            env[name] = getattr(a, flag)
    return env


def up(a: argparse.Namespace) -> int:
    env = dict(os.environ)
    for flag, (name, _) in UP_KNOBS.items():
        if getattr(a, flag) is not None:
            env[name] = str(getattr(a, flag))
    if a.subnet is not None:
        env["SUBNET"] = a.subnet
    if a.ssh_address is not None:
        env["SSH_ADDRESS"] = a.ssh_address
    if a.publish_ssh:
        env["PUBLISH_SSH"] = "yes"
    if a.nfs_profile is not None:
        env["NFS_PROFILE"] = a.nfs_profile
    host_mb = bringup.host_memory_mb()
    if a.learners is not None:
        from minihpc import classroom
        classroom.check_count(a.learners, host_mb)  # with the rest, before anything starts
    bringup.run(bringup.plan(given(a, given(a, env, TEXT_KNOBS))))  # everything checked before anything starts
    if a.learners is not None:
        added(a.learners, host_mb)
    return 0
