"""Named behaviour profiles of the NFS-style client, and the active-profile file.

A profile is plain data: attribute-cache timeouts in NFS mount-option terms,
the lookup cache mode, a deterministic visibility delay, latency per server
round trip and per byte, and fault rules. `nfsctl set` writes the active one
into the backing store's control directory; every node's client re-reads it
within a second, so switching needs no restart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nfs.faults import FaultError, FaultRule

LOOKUPCACHE = ("all", "pos", "none")


class ProfileError(ValueError):
    """A profile or override that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    # Attribute cache (seconds), as the NFS mount options of the same names.
    acregmin: float = 3.0
    acregmax: float = 60.0
    acdirmin: float = 30.0
    acdirmax: float = 60.0
    lookupcache: str = "all"
    # Deterministic mode: what another node created or changed stays invisible
    # (or stale) here for exactly `delay` seconds after its last change.
    delay: float = 0.0
    # Directories are exempt unless this is set: Snakemake's remote jobs wait
    # for a directory the submit host creates at submission (see lab/GUIDE.md).
    delay_dirs: bool = False
    # Which paths the delay applies to (a glob, paths as under the mountpoint,
    # as fault rules name them): "*" is all; `minihpc prove` lags only its own
    # run's directory, so that other users' work keeps the filesystem it had.
    delay_path: str = "*"
    # Latency, charged only when the model goes to the server.
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    meta_ms: float = 0.0  # extra per metadata operation (not READ/WRITE)
    bandwidth_mbs: float = 0.0  # MB/s per client for READ/WRITE payload; 0 = unlimited
    seed: int = 0
    faults: tuple[FaultRule, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.lookupcache not in LOOKUPCACHE:
            raise ProfileError(f"lookupcache={self.lookupcache!r}: use one of {', '.join(LOOKUPCACHE)}")
        for key in ("acregmin", "acregmax", "acdirmin", "acdirmax", "delay", "rtt_ms", "jitter_ms",
                    "meta_ms", "bandwidth_mbs"):
            if getattr(self, key) < 0:
                raise ProfileError(f"{key}={getattr(self, key)} is negative; use 0 or more")
        if self.acregmin > self.acregmax or self.acdirmin > self.acdirmax:
            raise ProfileError("acregmin/acdirmin must not exceed acregmax/acdirmax")
        if self.delay_path != "*" and not self.delay_path.startswith("/"):
            raise ProfileError(f"delay_path={self.delay_path!r}: give '*' or a path under the mountpoint starting "
                               "with '/', e.g. delay_path=/lab/results/*")

    @property
    def noac(self) -> bool:
        return self.acregmax == 0 and self.acdirmax == 0

    def with_options(self, **options: object) -> Profile:
        """Override fields; also accepts the mount-style `actimeo=N` and `noac=1`."""
        opts = dict(options)
        if "actimeo" in opts:
            t = _number("actimeo", opts.pop("actimeo"))
            opts.update(acregmin=t, acregmax=t, acdirmin=t, acdirmax=t)
        if _truthy(opts.pop("noac", False)):
            opts.update(acregmin=0, acregmax=0, acdirmin=0, acdirmax=0)
        known = {f.name: f for f in dataclasses.fields(self)} | {}
        changes: dict[str, object] = {}
        for key, value in opts.items():
            if key not in known or key in ("name", "faults"):
                settable = sorted(set(known) - {"name", "faults", "description"}) + ["actimeo", "noac"]
                raise ProfileError(f"unknown profile setting {key!r}; settable: {', '.join(settable)}")
            kind = known[key].type
            if kind == "bool":
                changes[key] = _truthy(value)
            elif kind == "int":
                changes[key] = int(_number(key, value))
            elif kind == "float":
                changes[key] = _number(key, value)
            else:
                changes[key] = str(value)
        return dataclasses.replace(self, **changes)

    @property
    def digest(self) -> str:
        """Identifies these exact settings: a client reports it once it runs them."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["faults"] = [r.to_dict() for r in self.faults]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        d = dict(d)
        try:
            faults = tuple(FaultRule(**r) for r in d.pop("faults", []))
            return cls(faults=faults, **d)
        except (TypeError, FaultError) as e:
            raise ProfileError(f"bad profile data: {e}") from None


def _number(key: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ProfileError(f"{key}={value!r} is not a number") from None


def _truthy(value: object) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


_NOAC = {"acregmin": 0.0, "acregmax": 0.0, "acdirmin": 0.0, "acdirmax": 0.0, "lookupcache": "none"}

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("off", "pass-through: no caching model, no latency, no delay; every node sees every change at once",
            **_NOAC),
    Profile("linux", "Linux NFS client defaults (acregmin=3 acregmax=60 acdirmin=30 acdirmax=60, "
            "lookupcache=all) on a LAN: 0.5 ms round trip, 1000 MB/s; as over NFS, a permission another node "
            "revokes (chmod 700 of a directory) applies here once the directory's cached attributes expire: "
            "within acdirmax=60 s", rtt_ms=0.5, jitter_ms=0.1, bandwidth_mbs=1000),
    Profile("delay-3", "deterministic: another node's changes appear here exactly 3 s later (no caching)",
            delay=3.0, **_NOAC),
    Profile("lag-10", "deterministic 10 s delay: defeats Snakemake's default 5 s --latency-wait", delay=10.0,
            **_NOAC),
    Profile("slow-metadata", "Linux defaults, but every metadata round trip costs 20 ms more (a loaded server)",
            rtt_ms=1.0, jitter_ms=0.2, meta_ms=20.0, bandwidth_mbs=500),
    Profile("rtt-5ms", "no caching, 5 ms per server round trip: small-file work pays per operation",
            rtt_ms=5.0, **_NOAC),
)}
DEFAULT = "off"


def named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(f"no NFS profile {name!r}; choose one of: {', '.join(PROFILES)}") from None


def claims_dir(control: Path) -> Path:
    """Where every node's client claims the failures of scope=cluster fault
    rules (nfs.faults): beside the active-profile file, on the server."""
    return control.parent / "claims"


def write_active(path: Path, profile: Profile) -> None:
    """Atomically replace the active-profile file (readers never see half of
    it); the claims of the profile before go (a rule set again starts over)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    claims = claims_dir(path)
    claims.mkdir(mode=0o700, exist_ok=True)
    for old in claims.iterdir():
        old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".profile.")
    with os.fdopen(fd, "w") as f:
        json.dump(profile.to_dict(), f, indent=1, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_active(path: Path) -> Profile:
    try:
        return Profile.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return named(DEFAULT)
    except json.JSONDecodeError as e:
        raise ProfileError(f"{path}: not valid JSON ({e}); rewrite it with `minihpc nfs set`") from None
