"""Each request runs with its caller's credentials.

The daemon is root, but the thread that serves a request takes the caller's
fsuid, fsgid and supplementary groups first, so the backing filesystem's own
checks apply as on a local disk: permissions, ownership of new files, setgid
directories, the clearing of setuid bits on write. Nothing is created as root
and handed over afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nfs.syscalls import set_thread_creds

ROOT = (0, 0, ())
# How long a process's supplementary groups are trusted before they are read
# again: they change only when it execs a setgid program or calls setgroups.
GROUPS_TTL = 1.0
_MAX_CACHED = 4096


class _Identity(threading.local):
    # A class default, so that a thread that never served a caller reads
    # root without a failed lookup (an exception per root request).
    current = ROOT


class Credentials:
    """Each serving thread's identity, switched only when the caller differs.
    `groups_of(pid)` reads a caller's supplementary groups (fuse_req_getgroups)."""

    def __init__(self, groups_of: Callable[[object], tuple[int, ...]], clock: Callable[[], float] = time.monotonic,
                 apply: Callable[[int, int, tuple[int, ...]], None] = set_thread_creds) -> None:
        self._groups_of, self._clock, self._apply = groups_of, clock, apply
        self._cache: dict[tuple[int, int, int], tuple[float, tuple[int, ...]]] = {}
        self._local = _Identity()  # each serving thread has its own identity

    @property
    def current(self) -> tuple[int, int, tuple[int, ...]]:
        """This thread's identity now (root until it serves a caller)."""
        return self._local.current

    @current.setter
    def current(self, who: tuple[int, int, tuple[int, ...]]) -> None:
        self._local.current = who

    def caller(self, req: object, uid: int, gid: int, pid: int) -> None:
        """Become the caller of `req` (uid, gid, pid from its context)."""
        if uid == 0:
            self._become(ROOT)
            return
        key, now = (pid, uid, gid), self._clock()
        hit = self._cache.get(key)
        if hit is None or now - hit[0] > GROUPS_TTL:
            if len(self._cache) > _MAX_CACHED:
                self._cache.clear()
            hit = (now, self._groups_of(req))
            self._cache[key] = hit
        self._become((uid, gid, hit[1]))

    @property
    def uid(self) -> int:
        """Whose request is being served (0: root's, or the client's own work)."""
        return self.current[0]

    def root(self) -> None:
        """Back to root, for the client's own work between requests."""
        self._become(ROOT)

    @contextmanager
    def as_root(self) -> Iterator[None]:
        """Root for a moment (the client's own doing), then whoever it was."""
        caller = self.current
        self._become(ROOT)
        try:
            yield
        finally:
            self._become(caller)

    def _become(self, who: tuple[int, int, tuple[int, ...]]) -> None:
        if who != self.current:
            self._apply(*who)
            self.current = who
