"""POSIX (fcntl) and flock locks shared by every node, as NFS shares them.

Every node's client runs on one kernel over one backing filesystem, so a lock
taken on the backing file is seen by all of them:

- A POSIX lock belongs to a lock owner (a process, as the kernel names it in
  the request). Each (inode, owner) gets a descriptor of its own on the
  backing file, and the lock is an open-file-description lock on it
  (F_OFD_SETLK): two owners conflict, one owner's locks merge, and closing
  that descriptor (when the owner closes any descriptor of the file: FUSE's
  flush) drops them all, as POSIX says.
- A flock lock belongs to an open file: it is taken on the file's own backing
  descriptor, and goes when that is closed (release).

A request that waits (F_SETLKW, flock without LOCK_NB) never holds a thread
that serves others: it joins a list that one thread retries without blocking
until the lock is granted, the caller is interrupted (EINTR) or the file is
closed under it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import stat as st
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("minihpc-nfs")

# struct flock on x86_64: l_type, l_whence, l_start, l_len, l_pid (+ padding).
_FLOCK = struct.Struct("hhqqi4x")
RETRY_MIN_S, RETRY_MAX_S = 0.0005, 0.01


class Flock(ctypes.Structure):
    _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short), ("l_start", ctypes.c_int64),
                ("l_len", ctypes.c_int64), ("l_pid", ctypes.c_int32)]


assert ctypes.sizeof(Flock) == _FLOCK.size


@dataclass
class _Owner:
    fd: int
    uid: int
    closed: bool = False


@dataclass
class _Waiter:
    try_once: Callable[[], bool]  # True once granted; raises OSError on a real error
    done: Callable[[int], None]  # reply: 0 or an errno
    interrupted: Callable[[], bool]
    owner: _Owner | None = None  # a POSIX wait: its owner's descriptor may be closed under it
    fh: int | None = None  # a flock wait: its open file may be released under it
    delay: float = RETRY_MIN_S
    due: float = field(default_factory=time.monotonic)


class Locks:
    """`open_backing(key, uid)` opens a new descriptor of the inode `key` for
    POSIX locks (counted against `uid`); `close_backing(fd)` closes one."""

    def __init__(self, open_backing: Callable[[object, int], int], close_backing: Callable[[int], None]) -> None:
        self._open, self._close = open_backing, close_backing
        self._owners: dict[tuple[object, int], _Owner] = {}
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        threading.Thread(target=self._run, daemon=True, name="lock waiters").start()

    # -- POSIX locks ------------------------------------------------------------

    def getlk(self, key: object, mode: int, owner: int, uid: int, lk: Flock) -> Flock:
        """The first lock that would block `lk` (l_type F_UNLCK if none)."""
        _lockable(mode)
        with self._lock:
            held = self._owners.get((key, owner))
            fd = held.fd if held else self._open(key, 0)
            try:
                out = _FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _pack(lk)))
            finally:
                if held is None:
                    self._close(fd)
        res = Flock(*out[:4], 0)  # the holder may be another node's process: no pid to name
        return res

    def setlk(self, key: object, mode: int, owner: int, uid: int, lk: Flock, wait: bool,
              done: Callable[[int], None], interrupted: Callable[[], bool]) -> None:
        """Apply `lk` for `owner`; `done(errno)` answers, now or once granted."""
        _lockable(mode)
        packed = _pack(lk)
        with self._lock:
            held = self._owners.get((key, owner))
            if held is None:
                if lk.l_type == fcntl.F_UNLCK:
                    done(0)
                    return
                held = _Owner(self._open(key, uid), uid)
                self._owners[(key, owner)] = held

            def try_once() -> bool:
                if held.closed:
                    raise OSError(errno.EBADF, "the file was closed while waiting for its lock")
                try:
                    fcntl.fcntl(held.fd, fcntl.F_OFD_SETLK, packed)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EACCES):
                        return False
                    raise
                return True
            self._attempt(_Waiter(try_once, done, interrupted, owner=held), wait)

    def holds(self, key: object, owner: int) -> bool:
        """Whether `owner` may hold POSIX locks on `key` (taken, or being taken):
        a read without the lock, so True when in doubt."""
        return (key, owner) in self._owners

    def flush(self, key: object, owner: int) -> None:
        """The owner closed a descriptor of the file: its POSIX locks on it go."""
        with self._lock:
            held = self._owners.pop((key, owner), None)
            if held is not None:
                held.closed = True
                self._close(held.fd)

    # -- flock locks --------------------------------------------------------------

    def flock(self, fh: int, op: int, done: Callable[[int], None], interrupted: Callable[[], bool]) -> None:
        wait = not op & fcntl.LOCK_NB
        op |= fcntl.LOCK_NB

        def try_once() -> bool:
            try:
                fcntl.flock(fh, op)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return False
                raise
            return True
        with self._lock:
            self._attempt(_Waiter(try_once, done, interrupted, fh=fh), wait)

    def released(self, fh: int) -> None:
        """Before the open file `fh` is closed: who waits on it is told EBADF."""
        with self._lock:
            for w in [w for w in self._waiters if w.fh == fh]:
                self._waiters.remove(w)
                w.done(errno.EBADF)

    # -- waiting ------------------------------------------------------------------

    def _attempt(self, w: _Waiter, wait: bool) -> None:
        """Under the lock: grant now, refuse (EAGAIN), or queue the wait."""
        try:
            ok = w.try_once()
        except OSError as e:
            w.done(e.errno or errno.EIO)
            return
        if ok:
            w.done(0)
        elif not wait:
            w.done(errno.EAGAIN)
        else:
            self._waiters.append(w)
            self._cv.notify()

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def _run(self) -> None:
        while True:
            try:
                self._step()
            except Exception:
                log.exception("lock waiters failed; going on")

    def _step(self) -> None:
        with self._cv:
            while not self._waiters:
                self._cv.wait()
            now = time.monotonic()
            for w in list(self._waiters):
                if w.due > now:
                    continue
                if w.interrupted():
                    self._waiters.remove(w)
                    w.done(errno.EINTR)
                    continue
                try:
                    ok = w.try_once()
                except OSError as e:
                    self._waiters.remove(w)
                    w.done(e.errno or errno.EIO)
                    continue
                if ok:
                    self._waiters.remove(w)
                    w.done(0)
                else:
                    w.delay = min(w.delay * 2, RETRY_MAX_S)
                    w.due = now + w.delay
            nxt = min((w.due for w in self._waiters), default=now + 1)
            self._cv.wait(max(nxt - time.monotonic(), 0))


def _pack(lk: Flock) -> bytes:
    return _FLOCK.pack(lk.l_type, lk.l_whence, lk.l_start, lk.l_len, 0)


def _lockable(mode: int) -> None:
    if not (st.S_ISREG(mode) or st.S_ISDIR(mode)):
        raise OSError(errno.ENOLCK, "only regular files and directories take locks on this mount")


def open_for_locks(proc_path: str, mode: int) -> int:
    """A new descriptor of the inode behind `proc_path` (a handle's magic
    link) that can carry read and write locks."""
    if st.S_ISDIR(mode):
        return os.open(proc_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.open(proc_path, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno not in (errno.ETXTBSY, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        return os.open(proc_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
