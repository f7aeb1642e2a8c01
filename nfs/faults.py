"""Fault rules: make chosen operations on chosen paths and nodes fail.

A rule fails matching operations either for the first `count` matches or each
match with `probability` (drawn from its own seeded generator, so a run is
repeatable). Rules are data: they live in the active profile. Each node's
client counts for itself, unless the rule says `scope=cluster`: then its
`count` failures are shared by every node, each claimed once in the
server's control directory (one failed write of a file, wherever the job
that writes it runs, and not again when it runs elsewhere).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ERRNOS = {name: getattr(errno, name) for name in ("EIO", "ENOSPC", "EDQUOT", "EACCES", "ESTALE")}
# Client operations a rule can name ("*" matches all of them).
# A scope=cluster rule's failures are files claimed one by one: a few, not a flood.
MAX_CLUSTER_COUNT = 100
OPS = ("getattr", "readdir", "open", "read", "write", "create", "mkdir", "unlink", "rmdir",
       "rename", "setattr", "symlink", "link", "readlink", "fsync", "statfs")


class FaultError(ValueError):
    """A fault rule that cannot be used; the message names the fix."""


@dataclass
class FaultRule:
    error: str
    op: str = "*"
    path: str = "*"
    node: str = "*"
    count: int | None = None
    probability: float | None = None
    seed: int = 0
    scope: str = "node"  # or "cluster": `count` failures in all, shared by every node
    fired: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.error not in ERRNOS:
            raise FaultError(f"fault error {self.error!r} is not one of {', '.join(ERRNOS)}")
        ops = self.op.split("|")
        if self.op != "*" and any(o not in OPS for o in ops):
            raise FaultError(f"fault op {self.op!r}: use '*' or names from {', '.join(OPS)} joined by '|'")
        if (self.count is None) == (self.probability is None):
            raise FaultError("a fault rule needs exactly one of count (first N matches) or probability (0..1)")
        if self.count is not None and self.count < 1:
            raise FaultError(f"fault count must be at least 1, got {self.count}")
        if self.probability is not None and not 0.0 < self.probability <= 1.0:
            raise FaultError(f"fault probability must be in (0, 1], got {self.probability}")
        if self.scope not in ("node", "cluster"):
            raise FaultError(f"fault scope {self.scope!r}: use node (each node counts for itself) or cluster")
        if self.scope == "cluster" and (self.count is None or self.count > MAX_CLUSTER_COUNT):
            raise FaultError(f"fault scope=cluster needs count=N, at most {MAX_CLUSTER_COUNT} (the failures every "
                             "node shares, each a file claimed once)")
        self._rng = random.Random(self.seed)

    @property
    def errno(self) -> int:
        return ERRNOS[self.error]

    def matches(self, op: str, path: str, node: str) -> bool:
        return ((self.op == "*" or op in self.op.split("|"))
                and fnmatch.fnmatchcase(path, self.path) and fnmatch.fnmatchcase(node, self.node))

    def fire(self) -> bool:
        """Called once per matching operation: does this one fail?"""
        if self.count is not None:
            hit = self.fired < self.count
        else:
            hit = self._rng.random() < self.probability
        self.fired += hit
        return hit

    def to_dict(self) -> dict:
        d = {"error": self.error, "op": self.op, "path": self.path, "node": self.node, "seed": self.seed}
        if self.scope != "node":
            d["scope"] = self.scope
        d.update({"count": self.count} if self.count is not None else {"probability": self.probability})
        return d

    @classmethod
    def parse(cls, spec: str) -> FaultRule:
        """`ERROR:op=..,path=..,node=..,count=N|probability=P,seed=S` (the CLI form)."""
        error, _, rest = spec.partition(":")
        kw: dict = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if key in kw:
                raise FaultError(f"fault {spec!r}: {key} is given twice; give each key once")
            if not eq or key not in ("op", "path", "node", "count", "probability", "seed", "scope"):
                raise FaultError(f"fault {spec!r}: {item!r} is not key=value with key op, path, node, count, "
                                 "probability, seed or scope (e.g. EIO:op=write,path=/lab/results/*,count=1)")
            try:
                kw[key] = int(value) if key in ("count", "seed") else float(value) if key == "probability" else value
            except ValueError:
                raise FaultError(f"fault {spec!r}: {key}={value!r} is not a number") from None
        return cls(error=error.upper(), **kw)


class FaultSet:
    """The rules of one profile, evaluated in order; the first that fires wins.
    `claim(name)` makes the file `name` in the claims directory every node's
    client shares (nfs.profiles.claims_dir), True only for the one caller that
    made it; scope=cluster rules fire through it, and `tag` names this
    profile's rules there."""

    def __init__(self, rules: tuple[FaultRule, ...] | list[FaultRule], node: str,
                 claim: Callable[[str], bool] | None = None, tag: str = "") -> None:
        # Fresh copies: counters and generators start over with every profile load.
        self.rules, self.node = [FaultRule(**r.to_dict()) for r in rules], node
        self.claim, self.tag = claim, tag
        self._exhausted: set[int] = set()  # cluster rules whose claims are all taken (until the next profile)
        self._lock = threading.Lock()

    def check(self, op: str, path: str) -> int | None:
        """The errno this operation must fail with, or None."""
        if not self.rules:
            return None
        with self._lock:
            for i, rule in enumerate(self.rules):
                if rule.matches(op, path, self.node) and (self._claimed(i, rule) if rule.scope == "cluster"
                                                          else rule.fire()):
                    return rule.errno
        return None

    def _claimed(self, i: int, rule: FaultRule) -> bool:
        """One of the rule's `count` failures, if the nodes have not claimed them all."""
        if self.claim is None or rule.count is None or i in self._exhausted:
            return False  # no shared directory: a cluster-wide rule never fires alone
        if any(self.claim(f"{self.tag}-{i}-{k}") for k in range(rule.count)):
            rule.fired += 1
            return True
        self._exhausted.add(i)
        return False


def claim_in(claims: Path) -> Callable[[str], bool]:
    """claim() for FaultSet: the file made with O_EXCL, so no two nodes make
    one; any error but its existence is no claim (the operation goes on)."""
    def claim(name: str) -> bool:
        try:
            os.close(os.open(claims / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        except OSError:
            return False
        return True
    return claim
