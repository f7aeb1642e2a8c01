"""A real SLURM site, reached over SSH as an ordinary user: the site file.

The site file (YAML) says how to reach the site's login node and what to use
there; nothing in it, or in the proofs that read it, assumes minihpc's own
names. Every field is checked here, before anything connects:

    ssh:
      host: login.example.org      # required
      port: 22
      user: jdoe                   # required
      identity: ~/.ssh/id_ed25519  # a private key; without it, the SSH agent
      known_hosts: ~/.ssh/known_hosts  # host keys are always checked strictly
      jump: jdoe@bastion.example.org:22  # optional; held to the same known_hosts, key, BatchMode
    slurm:
      partition: short             # required
      account: myproject           # the site's default if omitted
      qos: normal                  # optional
    work_dir: /scratch/jdoe/minihpc  # required: on the shared filesystem; all the proofs write goes under it
    scratch: /tmp                  # node-local scratch (null: none)
    setup: module load snakemake   # shell run before every command (optional)
    limits:
      minutes: 2                   # each proof job's time limit
      mem_mb: 500                  # each proof job's memory
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from minihpc.errors import BadInput, MinihpcError
from minihpc.facts import Facts
from minihpc.files import replace
from scratch.policy import MOUNT as SCRATCH

# The one description of the file: each key, its default (REQUIRED: none) and what it takes.
REQUIRED = object()
SCHEMA: dict[str, dict[str, tuple[Any, str]]] = {
    "ssh": {"host": (REQUIRED, "the login node's host name or address"),
            "port": (22, "the SSH port"),
            "user": (REQUIRED, "your user name on the site"),
            "identity": (None, "a private key file (default: the SSH agent)"),
            "known_hosts": (None, "a known_hosts file holding the login node's key (default ~/.ssh/known_hosts)"),
            "jump": (None, "a jump host, [user@]host[:port]")},
    "slurm": {"partition": (REQUIRED, "the partition the proofs' jobs go to"),
              "account": (None, "the account charged (default: the site's default for you)"),
              "qos": (None, "a QOS to ask for")},
    "limits": {"minutes": (2, "each proof job's time limit, minutes (1 to 30)"),
               "mem_mb": (500, "each proof job's memory, MB (100 to 4000)")},
}
TOP: dict[str, tuple[Any, str]] = {
    "work_dir": (REQUIRED, "a directory of yours on the site's shared filesystem"),
    "scratch": (None, "node-local scratch on compute nodes, or null"),
    "setup": ("", "shell run before every command, e.g. 'module load snakemake'"),
}
HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|\[?[0-9A-Fa-f:]+\]?")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
JUMP = re.compile(r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*)"
                  r"(?::(?P<port>\d{1,5}))?")
# A directory reaches job scripts and shell commands on the site: plain characters only.
PATH_CHAR = re.compile(r"[A-Za-z0-9._+/-]")
# Directories no proof may use as its work directory: it creates and deletes under it.
SYSTEM = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/opt", "/proc", "/root", "/run", "/sbin", "/srv",
          "/sys", "/tmp", "/usr", "/var", "/scratch", "/shared"}


@dataclass(frozen=True)
class Site:
    path: Path
    host: str
    user: str
    partition: str
    work_dir: str
    port: int = 22
    identity: Path | None = None
    known_hosts: Path | None = None
    jump: str | None = None
    account: str | None = None
    qos: str | None = None
    scratch: str | None = None
    setup: str = ""
    minutes: int = 2
    mem_mb: int = 500

    def profile(self, text: str) -> str:
        """One of minihpc's own profiles made for this site: its default-resources
        take the site's partition and account (None: the line dropped, the
        site's default) and the small limits; its staging prefixes go to the
        site's node-local scratch."""
        resources = {"slurm_partition": self.partition, "slurm_account": self.account,
                     "runtime": str(self.minutes), "mem_mb": str(self.mem_mb)}
        for key, value in resources.items():
            text = re.sub(rf"^(\s+){key}: .*\n", "" if value is None else rf"\g<1>{key}: {value}\n", text,
                          flags=re.M)
        return text.replace(f"{SCRATCH}/$USER", f"{self.scratch}/$USER") if self.scratch else text

    def jump_parts(self) -> tuple[str | None, str, int]:
        """The jump host as (user or None, host, port)."""
        m = JUMP.fullmatch(self.jump or "")
        if m is None:
            raise MinihpcError(f"no jump host in {self.path}", "give ssh.jump")
        return m["user"], m["host"], int(m["port"] or 22)

    def sbatch_options(self) -> list[str]:
        """What every proof job asks for: the site's partition, account and QOS, and the small limits."""
        opts = [f"--partition={self.partition}", f"--time={self.minutes}", f"--mem={self.mem_mb}M"]
        opts += [f"--account={self.account}"] if self.account else []
        return opts + ([f"--qos={self.qos}"] if self.qos else [])


def _bad(path: Path, key: str, what: str, fix: str) -> BadInput:
    return BadInput(f"site file {path}: {key}: {what}", fix)


def load(path: str | Path) -> Site:
    """Read and check a site file; a BadInput naming the field and the fix on the first problem."""
    try:
        import yaml  # the package's dependency; a bare python3 may lack it
    except ImportError:
        raise MinihpcError("reading a site file needs PyYAML", "apt-get install python3-yaml, or pip install "
                           "pyyaml") from None
    p = Path(path).expanduser()
    if not p.is_file():
        raise BadInput(f"no site file at {p}", "give the path of a site file (see minihpc site check --help)")
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise BadInput(f"site file {p} is not valid YAML: {str(e).splitlines()[0]}", "fix its syntax") from None
    if not isinstance(data, dict):
        raise BadInput(f"site file {p} is not a mapping of keys", "start from the example in docs/site-check.md")
    known = [*SCHEMA, *TOP]
    for key in data:
        if key not in known:
            raise _bad(p, str(key), "unknown key", f"known keys: {', '.join(known)}")
    values: dict[str, Any] = {}
    for key, (default, help_) in TOP.items():
        values[key] = _value(p, key, data.get(key, default), default, help_)
    for section, fields in SCHEMA.items():
        given = data.get(section) or {}
        if not isinstance(given, dict):
            raise _bad(p, section, f"is {type(given).__name__}, not a mapping", f"give its keys: {', '.join(fields)}")
        for key in given:
            if key not in fields:
                raise _bad(p, f"{section}.{key}", "unknown key", f"known keys under {section}: {', '.join(fields)}")
        for key, (default, help_) in fields.items():
            values[key] = _value(p, f"{section}.{key}", given.get(key, default), default, help_)
    return _checked(p, values)


def _value(p: Path, key: str, v: Any, default: Any, help_: str) -> Any:
    if v is REQUIRED or (v is None and default is REQUIRED):
        raise _bad(p, key, "missing", f"give {help_}")
    if v is None:
        return None
    want = type(default) if default not in (None, REQUIRED) else str
    if want is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise _bad(p, key, f"{v!r} is not a whole number", f"give {help_}")
    if want is str and not isinstance(v, str | int):
        raise _bad(p, key, f"{v!r} is not a string", f"give {help_}")
    return str(v) if want is str else v


def _checked(p: Path, v: dict[str, Any]) -> Site:
    if not HOST.fullmatch(v["host"]):
        raise _bad(p, "ssh.host", f"{v['host']!r} is not a host name or address", "give e.g. login.example.org")
    if not 1 <= v["port"] <= 65535:
        raise _bad(p, "ssh.port", f"{v['port']} is out of range", "give a port from 1 to 65535")
    for key, field in (("ssh.user", "user"), ("slurm.partition", "partition"), ("slurm.account", "account"),
                       ("slurm.qos", "qos")):
        if v[field] is not None and not NAME.fullmatch(v[field]):
            raise _bad(p, key, f"{v[field]!r} is not a plain name", "use letters, digits, '.', '_' and '-'")
    jump = JUMP.fullmatch(v["jump"]) if v["jump"] is not None else None
    if v["jump"] is not None and (jump is None or not 1 <= int(jump["port"] or 22) <= 65535):
        raise _bad(p, "ssh.jump", f"{v['jump']!r} is not [user@]host[:port]", "give e.g. jdoe@bastion.example.org")
    files = {}
    for key, field in (("ssh.identity", "identity"), ("ssh.known_hosts", "known_hosts")):
        if v[field] is None:
            files[field] = None
            continue
        f = Path(v[field]).expanduser()
        f = f if f.is_absolute() else (p.parent / f)
        if not f.is_file():
            raise _bad(p, key, f"no file at {f}", "give an existing file (relative paths are to the site file)")
        files[field] = f.resolve()
    for key in ("work_dir", "scratch"):
        if v[key] is None:
            continue
        bad = list(dict.fromkeys(c for c in v[key] if not PATH_CHAR.fullmatch(c)))
        if bad:
            raise _bad(p, key, f"{v[key]!r} holds {', '.join(map(repr, bad))}, which a directory "
                       "given to the site's shell may not", "use an absolute path of letters, digits and . _ + - /, "
                       "e.g. /scratch/jdoe/minihpc")
        d = PurePosixPath(v[key])
        if not d.is_absolute() or ".." in d.parts or str(d) != v[key].rstrip("/") or "//" in v[key]:
            raise _bad(p, key, f"{v[key]!r} is not a plain absolute path", "give e.g. /scratch/jdoe/minihpc")
    if v["work_dir"].rstrip("/") in SYSTEM or v["work_dir"].count("/") < 2:
        raise _bad(p, "work_dir", f"{v['work_dir']!r} is a system or top-level directory",
                   "give a directory of your own under it, e.g. /shared/jdoe-minihpc")
    if not 1 <= v["minutes"] <= 30:
        raise _bad(p, "limits.minutes", f"{v['minutes']} is out of range", "proof jobs are short: 1 to 30")
    if not 100 <= v["mem_mb"] <= 4000:
        raise _bad(p, "limits.mem_mb", f"{v['mem_mb']} is out of range", "proof jobs are small: 100 to 4000")
    return Site(p.resolve(), v["host"], v["user"], v["partition"], v["work_dir"].rstrip("/"), v["port"],
                files["identity"], files["known_hosts"], v["jump"], v["account"], v["qos"],
                v["scratch"].rstrip("/") if v["scratch"] else None, v["setup"] or "", v["minutes"], v["mem_mb"])


def known_hosts(facts: Facts, run_dir: Path) -> str:
    """known_hosts for this machine's own login node: the host key the cluster was made with, at
    127.0.0.1 and at the address it is published on beside it, if one (SSH_ADDRESS)."""
    key = " ".join((run_dir / "secrets" / "ssh_host_ed25519_key.pub").read_text().split()[:2])
    hosts = ["127.0.0.1"] + ([facts.ssh_address] if facts.ssh_address not in ("127.0.0.1", "0.0.0.0") else [])
    return "".join(f"[{h}]:{facts.ssh_port} {key}\n" for h in hosts)


def write_local(facts: Facts, run_dir: Path) -> Path:
    """A site file for this machine's own minihpc, reached the way any site
    is: its login node's sshd on the host's loopback, the lab user's key and
    the host key this cluster was made with (cluster/secrets.sh)."""
    secrets = run_dir / "secrets"
    host_pub, key = secrets / "ssh_host_ed25519_key.pub", secrets / "ssh_user_ed25519"
    if not host_pub.is_file() or not key.is_file():
        raise MinihpcError(f"no SSH keys in {secrets}", "bring the cluster up first: minihpc up")
    out = run_dir / "site"
    out.mkdir(mode=0o700, exist_ok=True)
    known = out / "known_hosts"
    replace(known, known_hosts(facts, run_dir))
    text = (f"# This machine's minihpc as a site (minihpc site local): what a real site's file holds.\n"
            f"ssh:\n  host: 127.0.0.1\n  port: {facts.ssh_port}\n  user: {facts.lab_user}\n"
            f"  identity: {key}\n  known_hosts: {known}\n"
            f"slurm:\n  partition: {facts.partitions[0]}\n  account: {facts.lab_account}\n"
            f"work_dir: {facts.shared}/{facts.lab_user}-site\nscratch: {facts.scratch}\n")
    path = out / "minihpc.yaml"
    replace(path, text)
    return path
