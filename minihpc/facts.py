"""The facts of the running cluster, written once by `minihpc up` (through
minihpc.topology) to .run/cluster.json and read by everything else: the lab,
the tests, the benchmarks and the CLI never restate them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minihpc import stacks
from minihpc.errors import MinihpcError
from minihpc.releases import DEFAULT as DEFAULT_RELEASE
from scratch.policy import MOUNT as SCRATCH

CLUSTER_NAME = "minihpc"
SHARED = "/shared"
# The lab user, the same on every node (the image creates it: cluster/Dockerfile,
# docker-compose.yml; a unit test keeps them in step with these).
LAB_USER, LAB_UID, LAB_ACCOUNT = "student", 1000, "lab"
# Another user of the same cluster, in another account: whose jobs compete
# with the lab user's (priority, QOS) in the tests and demos.
OTHER_USER, OTHER_UID, OTHER_ACCOUNT = "alice", 1001, "genomics"
LOGIN = "login"
# The SLURM REST API's service (slurmrestd; minihpc.rest) and the port it listens on in the cluster's network.
REST = "restd"
REST_PORT = 6820
FILE = "cluster.json"


@dataclass(frozen=True)
class Facts:
    nodes: list[str]
    cpus: int
    mem_mb: int
    scratch_mb: int
    # Each node's RealMemory (bigmem nodes have more than mem_mb) and its
    # stand-in GPUs; the site's partitions, the default first.
    node_mem_mb: dict[str, int] = field(default_factory=dict)
    # The cluster's Slurm release (minihpc.releases); a cluster.json from
    # before releases were a knob ran the default.
    slurm: str = DEFAULT_RELEASE
    # Its Snakemake stack (minihpc.stacks): the versions its images were built with.
    snakemake: str = field(default_factory=lambda: stacks.default().snakemake)
    slurm_plugin: str = field(default_factory=lambda: stacks.default().slurm_plugin)
    fs_plugin: str = field(default_factory=lambda: stacks.default().fs_plugin)
    # What it enforces (minihpc.policy.ENFORCEABLE) and a job's memory per CPU without --mem.
    enforce: list[str] = field(default_factory=lambda: ["memory", "time"])
    def_mem_per_cpu: int = 0
    gpus: dict[str, int] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)
    cluster_name: str = CLUSTER_NAME
    lab_user: str = LAB_USER
    lab_uid: int = LAB_UID
    lab_account: str = LAB_ACCOUNT
    other_user: str = OTHER_USER
    other_uid: int = OTHER_UID
    other_account: str = OTHER_ACCOUNT
    login: str = LOGIN
    shared: str = SHARED
    scratch: str = SCRATCH
    # The login node's sshd on the host's loopback (ssh -p PORT LAB_USER@127.0.0.1), or
    # where the cluster was made to publish it (SSH_ADDRESS).
    ssh_port: int = 2222
    ssh_address: str = "127.0.0.1"
    # The cluster's network and each service's fixed address in it (minihpc.topology).
    subnet: str = ""
    # Its containers' CPU weight (Docker's cpu_shares; minihpc.topology).
    cpu_shares: int = 1024
    addresses: dict[str, str] = field(default_factory=dict)
    # Services that run Slurm (every one but the database).
    daemons: list[str] = field(default_factory=lambda: ["slurmdbd", "slurmctld", REST])

    @property
    def slurm_services(self) -> list[str]:
        return [*self.daemons, self.login, *self.nodes]

    @property
    def stack(self) -> stacks.Stack:
        return stacks.recorded(self.snakemake, self.slurm_plugin, self.fs_plugin)

    @property
    def total_cpus(self) -> int:
        """Every compute node's CPUs together: what the cluster runs at once."""
        return len(self.nodes) * self.cpus

    @property
    def client_nodes(self) -> list[str]:
        """Where the shared filesystem is mounted: the login node and every compute node."""
        return [self.login, *self.nodes]

    def on_mount(self, path: str) -> str:
        """A path under the shared filesystem as the NFS client's rules name it
        (fault paths, delay_path): from the export's root, which every node shares."""
        return path[len(self.shared):]

    def write(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f".{FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        tmp.replace(run_dir / FILE)

    @classmethod
    def read(cls, run_dir: Path) -> Facts:
        path = run_dir / FILE
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise MinihpcError(f"no cluster facts at {path}", "bring a cluster up first: minihpc up") from None
        except (json.JSONDecodeError, TypeError) as e:
            raise MinihpcError(f"{path} is unreadable ({e})", "rewrite it: minihpc up") from None
