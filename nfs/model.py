"""What an NFS client does, as plain Python: one NodeModel per node.

The model decides what a node sees and what it costs, the FUSE client only
carries it out. Everything time-dependent goes through an injectable clock and
sleep, so the unit tests drive it with a fake clock.

- Attribute cache with NFS's adaptive timeouts: an entry lives `timeo` seconds;
  a revalidation that finds nothing changed doubles `timeo` (up to acregmax or
  acdirmax), a change resets it to acregmin/acdirmin. noac: every stat asks.
- Lookup cache: positive entries are the attribute cache; negative entries
  (lookupcache=all) last while the parent directory's cached attributes are
  valid and unchanged. lookupcache=none: every path lookup asks the server.
- Close-to-open: open() always revalidates; a node's own changes update its
  caches at once (the server's reply carries the new attributes).
- Deterministic delay D: a file another node created or changed (server ctime)
  stays invisible here, or shows its previous attributes, until ctime + D.
  Changes made before the profile took effect show at once (a switch is not
  a change). Deletions show at once.
- Latency: a round trip (with seeded jitter), extra per metadata operation and
  per byte, charged only when the model goes to the server.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import posixpath
import random
import stat as st
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nfs.faults import FaultSet
from nfs.profiles import Profile
from nfs.syscalls import HANDLE_FLAGS, open_beneath

DATA_OPS = frozenset({"read", "write"})
# Entries each of the model's caches keeps at most (the oldest go first): a
# user walking a huge tree costs the others round trips, never memory.
CACHE_MAX = 65536


@dataclass(frozen=True)
class Attrs:
    mode: int
    ino: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    blocks: int = 0

    @classmethod
    def from_stat(cls, s: os.stat_result) -> Attrs:
        return cls(s.st_mode, s.st_ino, s.st_nlink, s.st_uid, s.st_gid, s.st_size,
                   s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns, s.st_blocks)

    @property
    def is_dir(self) -> bool:
        return st.S_ISDIR(self.mode)

    @property
    def change(self) -> tuple[int, int, int]:
        """What NFS compares on revalidation (its change attribute)."""
        return self.ctime_ns, self.mtime_ns, self.size


class Store(Protocol):
    """The server's view: raises FileNotFoundError for a missing path."""

    def stat(self, path: str) -> Attrs: ...

    def listdir(self, path: str) -> list[Entry]: ...


# Asks the server for one file's attributes; FileNotFoundError if it is gone.
Server = Callable[[], Attrs]

# A directory entry: name, inode, file type bits (S_IFMT). Without a non-zero
# inode, glibc and bash's globbing skip the entry as deleted.
Entry = tuple[str, int, int]


class BeneathStore:
    """The real server, a directory tree only root can reach, seen by path
    strings only for the model's own bookkeeping (its caches, and entries it
    may hide): each path is opened strictly beneath the export's handle, with
    no symlink or `..` on the way (openat2), and only its attributes are read.
    The client's operations never use paths (nfs.nodes)."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd

    def stat(self, path: str) -> Attrs:
        fd = self._open(path, HANDLE_FLAGS)
        try:
            return Attrs.from_stat(os.stat(fd))
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[Entry]:
        return entries_of(self._open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC))

    def _open(self, path: str, flags: int) -> int:
        try:
            return open_beneath(self.root_fd, path, flags)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV):
                raise _enoent(path) from None  # not there as a plain path
            raise


def entries_of(dirfd: int) -> list[Entry]:
    """The entries of an open directory (closed afterwards)."""
    try:
        with os.scandir(dirfd) as it:
            return [(e.name, e.inode(), _dtype(e)) for e in it]
    finally:
        os.close(dirfd)


def _dtype(e: os.DirEntry) -> int:
    if e.is_symlink():
        return st.S_IFLNK
    if e.is_dir(follow_symlinks=False):
        return st.S_IFDIR
    return st.S_IFREG if e.is_file(follow_symlinks=False) else 0


@dataclass
class _Cached:
    attrs: Attrs
    fetched: float
    timeo: float

    def valid(self, now: float) -> bool:
        return now < self.fetched + self.timeo


def _enoent(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)


class NodeModel:
    def __init__(self, node: str, profile: Profile, store: Store,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 claim: Callable[[str], bool] | None = None) -> None:
        self.node, self.store, self.clock, self.sleep = node, store, clock, sleep
        self.claim = claim  # how scope=cluster fault rules are claimed (nfs.faults.FaultSet)
        self._lock = threading.RLock()
        self.stats: Counter[str] = Counter()
        self.charged = 0.0
        self.set_profile(profile)

    # -- profile and accounting -------------------------------------------

    def set_profile(self, profile: Profile) -> None:
        """Switch behaviour; caches start empty, as after a remount."""
        with self._lock:
            self.profile = profile
            self.faults = FaultSet(profile.faults, self.node, self.claim, profile.digest)
            self._rng = random.Random(profile.seed)
            self._attr: dict[str, _Cached] = {}
            self._neg: dict[str, tuple[int, int, int]] = {}
            self._own: dict[str, int] = {}
            self._seen: dict[str, Attrs] = {}
            # What changed before now was not made under this profile's delay.
            self._since_ns = int(self.clock() * 1e9)

    def fault(self, op: str, path: str) -> None:
        """Raise the error a fault rule injects into this operation, if any."""
        err = self.faults.check(op, path)
        if err is not None:
            self.stats[f"fault.{op}"] += 1
            raise OSError(err, os.strerror(err), path)

    def cost(self, op: str, nbytes: int = 0) -> float:
        p = self.profile
        t = p.rtt_ms / 1000
        if p.jitter_ms:
            with self._lock:
                t += self._rng.uniform(-p.jitter_ms, p.jitter_ms) / 1000
        if op not in DATA_OPS:
            t += p.meta_ms / 1000
        if nbytes and p.bandwidth_mbs:
            t += nbytes / (p.bandwidth_mbs * 1e6)
        return max(t, 0.0)

    def rpc(self, op: str, nbytes: int = 0) -> None:
        """One server round trip: counted and charged (outside any lock)."""
        t = self.cost(op, nbytes)
        with self._lock:
            self.stats[op] += 1
            self.stats["rpcs"] += 1
            self.charged += t
        if t > 0:
            self.sleep(t)

    def snapshot(self) -> dict:
        with self._lock:
            return {"node": self.node, "profile": self.profile.name, "digest": self.profile.digest,
                    "charged_s": round(self.charged, 6),
                    **dict(self.stats)}

    # -- what the node sees ------------------------------------------------

    def stat(self, path: str, handle: bool = False, server: Server | None = None) -> Attrs:
        """Attributes as this node sees them. `handle`: through an open file
        (no path lookup, so the lookup cache mode does not apply). `server`:
        how to ask the server when the caches cannot answer (default: the
        store, by path)."""
        now = self.clock()
        with self._lock:
            cached = self._attr.get(path)
            lookup = self.profile.lookupcache
            if not handle and lookup == "all" and self._negative_valid(path, now):
                self.stats["cache.negative"] += 1
                raise _enoent(path)
            if cached and cached.valid(now) and (handle or lookup != "none"):
                self.stats["cache.hit"] += 1
                return cached.attrs
        return self._fetch(path, "getattr" if cached or handle else "lookup", server)

    def revalidate(self, path: str, server: Server | None = None) -> Attrs:
        """Close-to-open: open() always asks the server."""
        return self._fetch(path, "getattr", server)

    def listdir(self, path: str, entries: Callable[[], list[Entry]] | None = None,
                stat: Callable[[str], Attrs] | None = None) -> list[Entry]:
        """The entries this node sees; `entries()` and `stat(name)` read the
        directory on the server (default: the store, by path)."""
        self.rpc("readdir")
        listed = entries() if entries else self.store.listdir(path)
        if self.profile.delay <= 0:
            return listed
        now = self.clock()
        visible = []
        for entry in listed:
            child = posixpath.join(path, entry[0])
            try:
                a = stat(entry[0]) if stat else self.store.stat(child)
            except FileNotFoundError:
                continue
            with self._lock:
                if self._visible(child, a, now) is not None:
                    visible.append(entry)
        return visible

    def hides_entries(self) -> bool:
        """Whether a listing must ask `visible` about each entry (a delay)."""
        return self.profile.delay > 0

    def visible(self, path: str, stat: Callable[[], Attrs]) -> bool:
        """Whether the entry `path` shows in a listing here now; `stat()`
        reads its attributes on the server."""
        try:
            a = stat()
        except FileNotFoundError:
            return False
        now = self.clock()
        with self._lock:
            return self._visible(path, a, now) is not None

    def own_change(self, *paths: str, parent: bool = True) -> None:
        """After this node changed `paths` on the server: its caches take the
        server's reply at once (close-to-open: a node sees its own writes).
        `parent`: the change also changed the directories holding them."""
        if not self._keeps_state():
            return
        now = self.clock()
        touched = set(paths) | ({posixpath.dirname(p) for p in paths if p != "/"} if parent else set())
        for path in touched:
            try:
                a: Attrs | None = self.store.stat(path)
            except OSError:  # gone, or no longer reachable by that path: forget it
                a = None
            with self._lock:
                if a is None:
                    self._own.pop(path, None)
                    self._seen.pop(path, None)
                    self._attr.pop(path, None)
                    continue
                _put(self._own, path, a.ctime_ns)
                _put(self._seen, path, a)
                self._neg.pop(path, None)
                self._remember(path, a, now)
        with self._lock:
            for path in paths:
                if path not in self._attr and self.profile.lookupcache == "all":
                    self._note_negative(path, now)

    def forget(self, path: str) -> None:
        """Drop what the caches say about `path` (its next stat asks the
        server): taking a lock revalidates, as NFS does."""
        with self._lock:
            self._attr.pop(path, None)
            self._neg.pop(path, None)

    # -- internals ---------------------------------------------------------

    def _keeps_state(self) -> bool:
        """False when nothing would ever read the caches (noac, no negative
        entries, no delay): then there is nothing to record."""
        p = self.profile
        return not p.noac or p.lookupcache == "all" or p.delay > 0

    def _fetch(self, path: str, op: str, server: Server | None = None) -> Attrs:
        self.rpc(op)
        try:
            a: Attrs | None = server() if server else self.store.stat(path)
        except FileNotFoundError:
            a = None
        now = self.clock()
        with self._lock:
            a = self._visible(path, a, now)
            if a is None:
                self._attr.pop(path, None)
                if self.profile.lookupcache == "all":
                    self._note_negative(path, now)
                raise _enoent(path)
            self._neg.pop(path, None)
            if self._keeps_state():
                self._remember(path, a, now)
            return a

    def _remember(self, path: str, a: Attrs, now: float) -> None:
        p = self.profile
        lo, hi = (p.acdirmin, p.acdirmax) if a.is_dir else (p.acregmin, p.acregmax)
        old = self._attr.get(path)
        if old is not None and old.attrs.change == a.change:
            timeo = min(max(old.timeo * 2, lo), hi)
        else:
            timeo = lo
            if old is not None and a.is_dir:
                # The directory changed: what we believed absent in it may exist now.
                prefix = path.rstrip("/") + "/"
                for child in [c for c in self._neg if c.startswith(prefix) and "/" not in c[len(prefix):]]:
                    del self._neg[child]
        _put(self._attr, path, _Cached(a, now, timeo))

    def _note_negative(self, path: str, now: float) -> None:
        """A negative entry, valid while the parent's cached attributes are.
        The parent's attributes come with the reply (NFS post-op attributes)."""
        parent = posixpath.dirname(path)
        cached = self._attr.get(parent)
        if cached is None or not cached.valid(now):
            try:
                pa = self.store.stat(parent)
            except OSError:  # gone, or not reachable by that path: no negative entry
                return
            self._remember(parent, pa, now)
            cached = self._attr[parent]
        _put(self._neg, path, cached.attrs.change)

    def _negative_valid(self, path: str, now: float) -> bool:
        key = self._neg.get(path)
        if key is None:
            return False
        parent = self._attr.get(posixpath.dirname(path))
        if parent is not None and parent.valid(now) and parent.attrs.change == key:
            return True
        del self._neg[path]
        return False

    def _delayed(self, path: str) -> bool:
        """Whether the profile's delay applies to `path` (its delay_path glob)."""
        glob = self.profile.delay_path
        return glob == "*" or fnmatch.fnmatchcase(path, glob)

    def _visible(self, path: str, a: Attrs | None, now: float) -> Attrs | None:
        """Apply the deterministic delay to what the server returned."""
        delay = self.profile.delay
        if delay <= 0 or not self._delayed(path):
            return a
        if a is None:
            # Deletions show at once: a file this node saw, deleted elsewhere,
            # must be creatable here again (the kernel would otherwise open the
            # stale entry without O_CREAT and fail).
            self._seen.pop(path, None)
            return None
        if ((a.is_dir and not self.profile.delay_dirs) or self._own.get(path) == a.ctime_ns
                or a.ctime_ns < self._since_ns):
            _put(self._seen, path, a)
            return a
        if now < a.ctime_ns / 1e9 + delay:
            return self._seen.get(path)  # stale, or None: not there yet
        _put(self._seen, path, a)
        return a


def _put(cache: dict, key: str, value: object) -> None:
    """Set `key` as the newest entry of `cache`, the oldest going beyond CACHE_MAX."""
    cache.pop(key, None)
    cache[key] = value
    if len(cache) > CACHE_MAX:
        del cache[next(iter(cache))]
