"""The cluster's shape, as one validated value: how many compute nodes
(c1..cN), their CPUs and memory, each node's scratch, the GPU and bigmem
nodes, the login node's published SSH port and the network's addresses.

NODES, NODE_CPUS, NODE_MEM_MB, BIGMEM_MB, GPUS, SCRATCH_MB, SSH_PORT,
SSH_ADDRESS, SUBNET and CPU_SHARES (from `minihpc up`'s flags or the environment) are checked here, once.
The last node is the bigmem node (BIGMEM_MB of RealMemory, by default twice
NODE_MEM_MB), the first carries
GPUS stand-in GPUs (0: none); with one node, c1 is both. SCRATCH_MB sizes the
private tmpfs at /scratch on every compute node and on the login node.

minihpc.configs renders the files the cluster runs from out of this model and
the local cluster's policy (minihpc.policy).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from minihpc.facts import Facts
from scratch import policy as scratch_policy

MAX_NODES = 16
MAX_MEM_MB = 1_048_576
# The bigmem node has this many times a standard node's memory unless BIGMEM_MB says otherwise:
# raising NODE_MEM_MB alone raises it too.
BIGMEM_FACTOR = 2
# The one place the cluster's default shape is written (the CLI's help reads it).
DEFAULTS = {"NODES": 2, "NODE_CPUS": 2, "NODE_MEM_MB": 3000, "BIGMEM_MB": BIGMEM_FACTOR * 3000, "GPUS": 2,
            "SCRATCH_MB": scratch_policy.DEFAULT_MB, "SSH_PORT": 2222, "SUBNET": "10.213.0.0/24", "CPU_SHARES": 1024,
            "SSH_ADDRESS": "127.0.0.1"}
# Where SUBNET may be: the private ranges (Python's is_private also admits documentation ones).
RFC1918 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
# Each service's fixed host number in SUBNET (.1 is the gateway); compute node
# cN is COMPUTE_BASE + N. Fixed, because Docker hands a freed address to the
# next container that asks: a node cut off or killed and brought back must not
# come back at another node's old address, where slurmctld would still send
# that node's jobs.
SERVICE_HOSTS = {"db": 2, "slurmdbd": 3, "slurmctld": 4, "login": 5, "restd": 6}
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
    # The login node's sshd, published on the host's loopback unless SSH_ADDRESS says otherwise
    # (minihpc up refuses another address without --publish-ssh).
    ssh_port: int = DEFAULTS["SSH_PORT"]
    ssh_address: str = DEFAULTS["SSH_ADDRESS"]
    # The cluster's network, every service at a fixed address in it (addresses).
    subnet: str = DEFAULTS["SUBNET"]
    # Its containers' CPU weight against the machine's other work when the
    # CPUs are contended (Docker's cpu_shares): a cluster beside another
    # (CI's smokes beside make test's) yields it the CPU.
    cpu_shares: int = DEFAULTS["CPU_SHARES"]

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Topology:
        t = cls(
            nodes=_int(env, "NODES", 1, MAX_NODES),
            cpus=_int(env, "NODE_CPUS", 1, 64),
            # Snakemake asks for at least 1000 MB per job: leave room for two.
            mem_mb=(mem := _int(env, "NODE_MEM_MB", 2048, MAX_MEM_MB)),
            scratch_mb=_int(env, "SCRATCH_MB", scratch_policy.MIN_MB, scratch_policy.MAX_MB),
            bigmem_mb=_int(env, "BIGMEM_MB", 2048, MAX_MEM_MB, default=min(BIGMEM_FACTOR * mem, MAX_MEM_MB)),
            gpus=_int(env, "GPUS", 0, 16),
            ssh_port=_int(env, "SSH_PORT", 1024, 65535),
            ssh_address=_address(env),
            subnet=_subnet(env),
            cpu_shares=_int(env, "CPU_SHARES", 2, 1024),
        )
        if t.bigmem_mb <= t.mem_mb:
            raise TopologyError(f"BIGMEM_MB={t.bigmem_mb} is not above NODE_MEM_MB={t.mem_mb}; the bigmem node "
                                f"must have more memory than the others (e.g. BIGMEM_MB={BIGMEM_FACTOR * t.mem_mb}, "
                                "or leave it out: twice NODE_MEM_MB)")
        return t

    @classmethod
    def from_facts(cls, f: Facts) -> Topology:
        """The topology a running cluster was rendered from (its cluster.json)."""
        return cls(nodes=len(f.nodes), cpus=f.cpus, mem_mb=f.mem_mb, scratch_mb=f.scratch_mb,
                   bigmem_mb=max(f.node_mem_mb.values()), gpus=max(f.gpus.values(), default=0),
                   ssh_port=f.ssh_port, ssh_address=f.ssh_address, subnet=f.subnet or DEFAULTS["SUBNET"],
                   cpu_shares=f.cpu_shares)

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
    def ssh_published(self) -> list[str]:
        """Where Docker publishes sshd: loopback always (what the project's own
        ssh and `site local` dial), and the address asked for beside it."""
        return [self.ssh_address] if self.ssh_address in ("0.0.0.0", "127.0.0.1") else ["127.0.0.1", self.ssh_address]

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.subnet).network_address + 1)

    def node_mem(self, name: str) -> int:
        return self.bigmem_mb if name in self.bigmem_nodes else self.mem_mb


def _int(env: dict[str, str], key: str, lo: int, hi: int, default: int | None = None) -> int:
    default = DEFAULTS[key] if default is None else default
    raw = env.get(key, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise TopologyError(f"{key}={raw!r} is not a whole number; use e.g. {key}={default}") from None
    if not lo <= value <= hi:
        raise TopologyError(f"{key}={value} is out of range; allowed {lo} to {hi} (e.g. {key}={default})")
    return value


def _address(env: dict[str, str]) -> str:
    raw = env.get("SSH_ADDRESS", "").strip() or DEFAULTS["SSH_ADDRESS"]
    try:
        return str(ipaddress.IPv4Address(raw))
    except ValueError:
        raise TopologyError(f"SSH_ADDRESS={raw!r} is not an IPv4 address of this machine; e.g. "
                            f"SSH_ADDRESS={DEFAULTS['SSH_ADDRESS']} (loopback, the default) or 0.0.0.0 (every "
                            "interface)") from None


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
