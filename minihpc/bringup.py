"""`minihpc up` as kind creates a cluster: the request is validated once into
a Plan, then an ordered list of steps acts on it, each saying what it did;
a step that fails names itself and what to do. Re-running with another size
reconciles a running cluster.

Shell stays where it is the natural glue: installing the engine
(cluster/bootstrap-host.sh), making the base image with debootstrap
(cluster/base-image.sh), the secrets (cluster/secrets.sh), the images' tag
and the host's pip settings for the build (cluster/image-tag.sh,
cluster/pipconf.sh), and Compose itself (cluster/compose.sh). None of them
reads a sizing knob.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from minihpc import (
    NAME,
    NODES_FILE,
    NODES_FILE_NAME,
    ROOT,
    RUN_DIR,
    check_name,
    configs,
    policy,
    ready,
    releases,
    stacks,
    tree_env,
)
from minihpc.errors import BadInput, MinihpcError
from minihpc.facts import LOGIN, Facts
from minihpc.network import check_subnet
from minihpc.topology import Topology, TopologyError
from minihpc.transport import container_name, containers

READY_TIMEOUT = 180
COMPOSE_FILE = ROOT / "docker-compose.yml"


@dataclass(frozen=True)
class Plan:
    """What `up` was asked for, every value checked."""

    topology: Topology
    nfs_profile: str = ""
    release: releases.Release = field(default_factory=releases.default)
    stack: stacks.Stack = field(default_factory=stacks.default)
    enforcement: policy.Enforcement = field(default_factory=policy.Enforcement)
    ready_timeout: int = READY_TIMEOUT
    started: float = field(default_factory=time.time)


def plan(env: Mapping[str, str]) -> Plan:
    """Check the whole request (the knobs as `up`'s flags and the environment
    give them) before anything starts; BadInput names the value and the fix."""
    check_name()
    try:
        topology = Topology.from_env(kept_placement(env))
    except TopologyError as e:
        raise BadInput(str(e)) from None
    check_published(topology, env)
    raw = env.get("READY_TIMEOUT", "").strip() or str(READY_TIMEOUT)
    if not raw.isdigit():
        raise BadInput(f"READY_TIMEOUT={raw!r} is not a whole number", f"use e.g. READY_TIMEOUT={READY_TIMEOUT}")
    if int(raw) < 10:
        raise BadInput(f"--timeout {raw} is too short", "give the cluster at least 10 s")
    profile = env.get("NFS_PROFILE", "").strip()
    if profile:
        from nfs.profiles import ProfileError, named
        try:
            named(profile)
        except ProfileError as e:
            raise BadInput(str(e)) from None
    other = _other_cluster()
    if other:
        state = Path(other).parent.parent
        raise MinihpcError(f"a minihpc cluster named {NAME} made from another state directory is on this machine "
                           f"({state})", f"one cluster of a name per machine: remove it with "
                           f"MINIHPC_STATE_DIR={state} minihpc destroy --yes, use it with MINIHPC_STATE_DIR={state}, "
                           "or give this one another name (MINIHPC_CLUSTER=NAME, with its own --ssh-port and --subnet)")
    enforcement = policy.Enforcement.from_env(dict(env))
    release = check_release(env.get("SLURM_RELEASE", ""))
    stack = check_stack(env, release)
    check_subnet(topology)
    check_port(topology)
    check_memory(topology)
    return Plan(topology, profile, release=release, stack=stack, enforcement=enforcement, ready_timeout=int(raw))


def kept_placement(env: Mapping[str, str]) -> dict[str, str]:
    """env, with the SSH port and address, subnet and CPU weight a cluster made from this
    state has unless given: re-running `up` (a resize, the enforcement back)
    keeps what it was given to sit beside other clusters."""
    env = dict(env)
    if NODES_FILE.exists():
        f = Facts.read(RUN_DIR)
        for key, had in (("SSH_PORT", str(f.ssh_port)), ("SSH_ADDRESS", f.ssh_address), ("SUBNET", f.subnet),
                         ("CPU_SHARES", str(f.cpu_shares))):
            if had and not env.get(key, "").strip():
                env[key] = had
    return env


def check_published(t: Topology, env: Mapping[str, str]) -> None:
    """An sshd published beyond loopback only when asked for in so many words
    (PUBLISH_SSH=yes, up's --publish-ssh): anyone who reaches that address can
    then try the lab user's and every learner's key. A cluster made so keeps
    it, and is reminded at every `up`. The address must be this machine's."""
    if ipaddress.IPv4Address(t.ssh_address).is_loopback:
        return
    if env.get("SSH_ADDRESS", "").strip() and env.get("PUBLISH_SSH", "").strip() != "yes" and \
            not (NODES_FILE.exists() and Facts.read(RUN_DIR).ssh_address == t.ssh_address):
        where = f"this machine's port {t.ssh_port}" if t.ssh_address == "0.0.0.0" else f"{t.ssh_address}:{t.ssh_port}"
        raise BadInput(f"SSH_ADDRESS={t.ssh_address} publishes the login node's sshd beyond this machine: anyone who "
                       f"reaches {where} can try the lab user's and the learners' keys",
                       "confirm it with --publish-ssh (PUBLISH_SSH=yes), or leave SSH_ADDRESS at 127.0.0.1")
    if not _port_free(0, t.ssh_address):
        raise BadInput(f"SSH_ADDRESS={t.ssh_address} is not an address of this machine",
                       "give one of its own (ip -4 addr), or 0.0.0.0 for every interface")
    say(f"warning: the login node's sshd is published on {t.ssh_address}:{t.ssh_port}, beyond this machine "
        "(keys only, no passwords, no root)")


def check_port(t: Topology) -> None:
    """Refuse an SSH_PORT that another cluster's login node or any other
    program holds on this machine (Docker would fail half-way through
    starting the cluster), naming a free one. This cluster's own login node
    holding it is no clash."""
    ours = container_name(LOGIN)
    publishing = containers.publishing(t.ssh_port)
    holders = [n for n in publishing if n != ours]
    if holders:
        raise BadInput(f"SSH_PORT={t.ssh_port} is published by container {holders[0]} (another cluster's login node?)",
                       f"give this cluster another port: minihpc up --ssh-port {_free_port(t.ssh_port)}")
    if ours in publishing:
        return
    if not all(_port_free(t.ssh_port, a) for a in t.ssh_published):
        raise BadInput(f"SSH_PORT={t.ssh_port} is in use on this machine by another program",
                       f"give this cluster another port: minihpc up --ssh-port {_free_port(t.ssh_port)}")


def _port_free(port: int, address: str = "127.0.0.1") -> bool:
    """Nothing listens on address:port. SO_REUSEADDR, as Docker's own proxy binds: connections
    the cluster's sshd just closed (TIME_WAIT, a minute after `down`) hold nothing."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _free_port(taken: int) -> int:
    return next(p for p in (*range(taken + 1, 65536), *range(1024, taken))
                if _port_free(p) and not containers.publishing(p))


def check_release(raw: str) -> releases.Release:
    """The release asked for; a cluster made from this state keeps its own
    (Slurm upgrades its state and database two releases at most, and never
    back), so another is refused before anything changes."""
    made = Facts.read(RUN_DIR).slurm if NODES_FILE.exists() else None
    if not raw.strip() and made:
        return releases.named(made)
    release = releases.named(raw)
    if made and made != release.slurm:
        raise _kept(f"--slurm {release.slurm}", f"Slurm {made}", "its release (Slurm upgrades its state two releases "
                    "at most, and never back)", f"leave --slurm out to keep {made}", f"--slurm {release.slurm}")
    return release


def _kept(asked: str, runs: str, keeps: str, keep: str, flags: str) -> BadInput:
    """The refusal of a change a cluster cannot take (its release, its stack), naming the jobs it holds."""
    jobs = _jobs_in_queue()
    held = f", with {jobs} job(s) queued or running" if jobs else ""
    return BadInput(f"{asked}: this cluster runs {runs}{held}, and a cluster keeps {keeps}; nothing was changed",
                    f"{keep}, or make a new cluster: minihpc destroy --yes (removes its jobs, accounting and /shared), "
                    f"then minihpc up {flags}")


# The knobs that pin the Snakemake stack (minihpc.stacks), as `up`'s flags name them.
STACK_KNOBS = {"snakemake": "SNAKEMAKE_VERSION", "slurm_plugin": "SLURM_PLUGIN_VERSION",
               "fs_plugin": "FS_PLUGIN_VERSION"}


def stack_asked(env: Mapping[str, str], release: releases.Release) -> stacks.Stack:
    """The stack the knobs pin, built for this release, or BadInput naming the sets that would work."""
    return stacks.choose(**{k: env.get(name, "") for k, name in STACK_KNOBS.items()}, suite=release.debian)


def check_stack(env: Mapping[str, str], release: releases.Release) -> stacks.Stack:
    """The Snakemake stack asked for; a cluster keeps the one its images were
    built with, as it keeps its release (another is refused, nothing changed)."""
    made = Facts.read(RUN_DIR).stack if NODES_FILE.exists() else None
    given = {k: env.get(name, "").strip() for k, name in STACK_KNOBS.items()}
    if made and not made.pinned:
        raise BadInput(f"this cluster was built with {made.describe()}, which this minihpc no longer pins; nothing "
                       "was changed", "use the minihpc that made it, or make a new cluster: minihpc destroy --yes "
                       "(removes its jobs, accounting and /shared), then minihpc up")
    if made and all(getattr(made, k) == v for k, v in given.items() if v):
        return made  # no version given, or only versions the cluster's own set holds
    stack = stack_asked(env, release)
    if made and made != stack:
        raise _kept(stack.describe(), made.describe(), "the stack its images were built with",
                    "leave the version flags out to keep it", f"--snakemake {stack.snakemake}")
    return stack


def _jobs_in_queue() -> int:
    """Jobs the controller holds (0 when it is not running)."""
    if not containers.running("slurmctld"):
        return 0
    r = containers.exec("slurmctld", "squeue", "-h", "-o", "%i", timeout=30)
    return len(r.stdout.split()) if r.returncode == 0 else 0


def host_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The host's MemTotal in MiB (every node's container sees it as its own), or None if unknown."""
    try:
        kib = next(int(line.split()[1]) for line in meminfo.read_text().splitlines() if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return kib // 1024


def check_memory(t: Topology, host_mb: int | None = None) -> None:
    """Refuse a node the host cannot hold: slurmd finds less memory than the
    node declares and Slurm drains it ("Low RealMemory"), and no job asking
    for it could run. Nodes that together declare more than the host has are
    allowed (each job is held to its request; a workflow rarely fills every
    node at once), and said."""
    host_mb = host_memory_mb() if host_mb is None else host_mb
    if host_mb is None:
        return
    biggest = max(t.node_mem(n) for n in t.names)
    if biggest > host_mb:
        fix = (f"give NODE_MEM_MB below {host_mb} and BIGMEM_MB at most {host_mb}" if t.mem_mb >= host_mb else
               f"give BIGMEM_MB at most {host_mb} (unless given, it is twice NODE_MEM_MB)")
        raise BadInput(f"a node of {biggest} MiB does not fit this host ({host_mb} MiB of memory): Slurm would "
                       "drain it for low RealMemory", fix)
    total = sum(t.node_mem(n) for n in t.names)
    if total > host_mb:
        say(f"note: the nodes declare {total} MiB together, this host has {host_mb} MiB: jobs that use it all at "
            "once would exhaust the host")


def _other_cluster() -> str | None:
    """The compose.nodes.yml of a minihpc cluster (running or stopped) that
    another run directory made, if any: Compose's own labels say which."""
    r = containers.ps('{{.Label "com.docker.compose.project.config_files"}}')
    if r.returncode != 0:  # no engine yet: the engine step starts one, and then nothing is there
        return None
    ours = str(NODES_FILE)
    for files in set(r.stdout.split()):
        nodes = [f for f in files.split(",") if f.endswith("/" + NODES_FILE_NAME)]
        if nodes and ours not in nodes:
            return nodes[0]
    return None


@dataclass
class State:
    """What the steps learn on the way and pass on."""

    plan: Plan
    was_running: bool = False  # a controller was running before this `up`
    changed: bool = False  # the rendered configuration differs from the last


@dataclass(frozen=True)
class Step:
    name: str
    does: str
    act: Callable[[State], str | None]  # what it did (one line), or None when there was nothing to do


class StepFailed(MinihpcError):
    def __init__(self, step: Step, what: str, fix: str) -> None:
        super().__init__(f"bring-up step '{step.name}' ({step.does}) failed: {what}", fix)


def say(line: str) -> None:
    print(f"cluster-up: {line}", file=sys.stderr, flush=True)


def _script(name: str, *args: str, env: Mapping[str, str] | None = None) -> None:
    """Run one of the tree's scripts, its output passed through; raise on failure."""
    r = subprocess.run([str(ROOT / "cluster" / name), *args], env={**tree_env(), **(env or {})},
                       stdin=subprocess.DEVNULL, check=False)
    if r.returncode != 0:
        raise _Failed(f"cluster/{name} exited {r.returncode} (its lines above say why)")


def _compose(*args: str, env: Mapping[str, str] | None = None, run_dir: Path | None = None) -> None:
    try:
        # compose.sh is given the run directory: this cluster's, or the one `run_dir` names
        containers.compose_shown(*args, env=dict(env) if env else None, run_dir=run_dir)
    except MinihpcError as e:
        raise _Failed(f"{e.what} ({e.fix})") from None


def _exec(service: str, *argv: str) -> str:
    r = containers.exec(service, *argv, timeout=120)
    if r.returncode != 0:
        raise _Failed(f"{' '.join(argv)} on {service} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
    return r.stdout


class _Failed(Exception):
    """A step's own failure, which run() turns into StepFailed with the step's name."""

    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what)
        self.fix = fix


def engine(s: State) -> str | None:
    if containers.engine_answers():
        return None
    say("docker engine not reachable: running cluster/bootstrap-host.sh")
    _script("bootstrap-host.sh")
    return "docker engine started"


def _base(s: State) -> dict[str, str]:
    return {"SUITE": s.plan.release.debian, "BASE_IMAGE": s.plan.release.base_image}


def base_image(s: State) -> str | None:
    _script("base-image.sh", env=_base(s))
    return None


def secrets(s: State) -> str | None:
    _script("secrets.sh", str(RUN_DIR / "secrets"), env=_base(s))
    return None


def render(s: State) -> str | None:
    s.was_running = NODES_FILE.exists() and containers.running("slurmctld")
    s.changed = configs.render(s.plan.topology, RUN_DIR, COMPOSE_FILE, s.plan.release, s.plan.enforcement,
                               s.plan.stack)
    r, e = s.plan.release, s.plan.enforcement
    stack = "" if s.plan.stack.default else f"; {s.plan.stack.describe()}"
    return (f"configuration {'rendered' if s.changed else 'unchanged'} in {RUN_DIR} "
            f"(Slurm {r.packaged}, Debian {r.debian}{stack}; enforcing {', '.join(e.names) or 'no limits'})")


def images(s: State) -> str | None:
    return build_images(s.plan.release, RUN_DIR, s.plan.stack)


def build_images(release: releases.Release, run_dir: Path, stack: stacks.Stack | None = None) -> str | None:
    """Build the release's images from the files rendered in run_dir, unless
    images of the same inputs are there; what was built, or None."""
    tag = subprocess.run([str(ROOT / "cluster/image-tag.sh")], capture_output=True, text=True, check=True,
                         env={**os.environ, "MINIHPC_RUN_DIR": str(run_dir)}).stdout.strip()
    if containers.have_images(f"minihpc/slurm:{tag}", f"minihpc/db:{tag}"):
        return None
    with_stack = "" if stack is None or stack.default else f" with {stack.describe()}"
    say(f"building images minihpc/{{db,slurm}}:{tag} of Slurm {release.packaged}{with_stack} (layers are cached; a "
        "cold build takes a few minutes)")
    pipconf = str(ROOT / "cluster/pipconf.sh")
    ca = subprocess.run([pipconf, "ca"], capture_output=True, text=True, check=False)
    if ca.returncode != 0:
        raise _Failed(ca.stderr.strip())
    build = {"MINIHPC_PIP_CA": ca.stdout.strip() or "/dev/null"}
    for line in subprocess.run([pipconf, "args"], capture_output=True, text=True, check=True).stdout.splitlines():
        key, _, value = line.partition("=")
        build[key] = value
    _compose("build", "db", "slurmctld", env={**os.environ, **build}, run_dir=run_dir)
    return f"images minihpc/{{db,slurm}}:{tag} built"


def start_containers(s: State) -> str | None:
    names = s.plan.topology.names
    say(f"starting {len(names)} compute node(s): {' '.join(names)}")
    _compose("up", "-d", "--remove-orphans", "--quiet-pull")
    return None


def reconfigure(s: State) -> str | None:
    if not s.was_running:
        return None
    if not s.plan.release.reconfigure_resizes and _controller_nodes() != set(s.plan.topology.names):
        # Its controller reads a new node count only at start (minihpc/releases.py); the
        # reconfigure after it has every slurmd read the new configuration too. Asked of
        # slurmctld, not of the last rendering: an `up` that failed half-way is redone.
        _compose("restart", "slurmctld")
        try:
            ready.wait_healthy(["slurmctld"], s.plan.ready_timeout)
        except MinihpcError as e:
            raise _Failed(e.what, e.fix) from None
        _exec("slurmctld", "scontrol", "reconfigure")
        return f"node count changed: slurmctld restarted (Slurm {s.plan.release.slurm}), then scontrol reconfigure"
    if not s.changed:
        return None
    _exec("slurmctld", "scontrol", "reconfigure")
    return "topology changed: scontrol reconfigure"


def _controller_nodes() -> set[str]:
    """The nodes the running controller knows."""
    return set(_exec("slurmctld", "sinfo", "-h", "-N", "-o", "%N").split())


def wait(s: State) -> str | None:
    try:
        ready.wait_ready(s.plan.topology.names, s.plan.ready_timeout, s.plan.started)
    except MinihpcError as e:
        raise _Failed(e.what, e.fix) from None
    return None


def accounting(s: State) -> str | None:
    if not s.was_running:
        return None  # a fresh database got the accounts and QOS at its start
    _exec("slurmdbd", "python3", "/usr/local/lib/minihpc/accounting.py", "/etc/minihpc/slurm/accounting.json")
    return "accounts and QOS brought up to date in the kept database"


def nfs(s: State) -> str | None:
    if s.plan.nfs_profile:
        say(_exec(LOGIN, "minihpc-nfs", "set", s.plan.nfs_profile).splitlines()[0])
    return "shared filesystem: NFS " + _exec(LOGIN, "minihpc-nfs", "show").splitlines()[0]


STEPS = [
    Step("engine", "start the Docker engine if none answers", engine),
    Step("base image", "provide the Debian base image", base_image),
    Step("secrets", "make the munge key, DB password and SSH keys at first start", secrets),
    Step("configs", "render slurm.conf, gres.conf, the Compose services and the facts", render),
    Step("images", "build the cluster's images unless their inputs are unchanged", images),
    Step("containers", "start or reconcile the containers", start_containers),
    Step("reconfigure", "tell a running controller of a changed topology", reconfigure),
    Step("ready", "wait until every node is idle and sacct answers", wait),
    Step("accounting", "bring a kept database's accounts and QOS up to date", accounting),
    Step("nfs profile", "set the NFS client profile asked for", nfs),
]
# What a step's failure asks the user to do, where its lines above are not enough.
FIXES = {"engine": "start a Docker engine (make bootstrap), then minihpc up again"}
DEFAULT_FIX = "see the lines above; minihpc logs shows every service"


def build(release: releases.Release, stack: stacks.Stack) -> None:
    """`minihpc build`: the release's images, ready for `up --slurm`, with no
    cluster started or changed (its files are rendered in a directory of its own)."""
    def images_apart(s: State) -> str:
        with tempfile.TemporaryDirectory(prefix="minihpc-build.") as d:
            configs.render(s.plan.topology, Path(d), COMPOSE_FILE, release, stack=stack)
            with_stack = "" if stack.default else f" with {stack.describe()}"
            return (build_images(release, Path(d), stack)
                    or f"images of Slurm {release.packaged}{with_stack}: there already")
    state = State(Plan(Topology.from_env({}), release=release, stack=stack))
    for step in [*(s for s in STEPS if s.name in ("engine", "base image")),
                 Step("images", "build the release's images unless their inputs are unchanged", images_apart)]:
        _act(step, state)


def _act(step: Step, state: State) -> None:
    try:
        did = step.act(state)
    except _Failed as e:
        raise StepFailed(step, str(e), e.fix or FIXES.get(step.name, DEFAULT_FIX)) from None
    if did:
        say(did)


def run(p: Plan) -> None:
    """Bring the cluster to the plan, step by step."""
    state = State(p)
    for step in STEPS:
        _act(step, state)
