"""A small ctypes binding to libfuse3's low-level API (fuse_lowlevel.h).

Why not the high-level API (mfusepy): there libfuse owns the node ids and
answers the kernel with paths, so a filesystem cannot invalidate one directory
entry another node removed, and every create costs an extra getattr. Here the
filesystem owns the node ids, answers each request with one reply, and can
tell the kernel exactly which entry or inode went stale.

Only what nfs.client needs is bound. The structs are the x86_64 Linux ABI,
identical in libfuse 3.14 (the host) and 3.17 (the images).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import errno
import functools
import heapq
import itertools
import logging
import os
import platform
import select
import struct
import threading
import time
from collections.abc import Callable, Iterator

if platform.machine() != "x86_64":  # struct stat below is x86_64's
    raise ImportError(f"nfs.fuse_ll supports x86_64 only, not {platform.machine()}")


def _load() -> ctypes.CDLL:
    for name in ("libfuse3.so.4", "libfuse3.so.3", ctypes.util.find_library("fuse3")):
        if name:
            try:
                return ctypes.CDLL(name, use_errno=True)
            except OSError:
                continue
    raise ImportError("libfuse3 not found: install Debian's fuse3 package (make bootstrap does)")


lib = _load()

c_ino = ctypes.c_uint64
c_req = ctypes.c_void_p


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class Stat(ctypes.Structure):
    _fields_ = [("st_dev", ctypes.c_uint64), ("st_ino", ctypes.c_uint64), ("st_nlink", ctypes.c_uint64),
                ("st_mode", ctypes.c_uint32), ("st_uid", ctypes.c_uint32), ("st_gid", ctypes.c_uint32),
                ("_pad0", ctypes.c_int32), ("st_rdev", ctypes.c_uint64), ("st_size", ctypes.c_int64),
                ("st_blksize", ctypes.c_int64), ("st_blocks", ctypes.c_int64), ("st_atim", Timespec),
                ("st_mtim", Timespec), ("st_ctim", Timespec), ("_unused", ctypes.c_int64 * 3)]


assert ctypes.sizeof(Stat) == 144


class StatVFS(ctypes.Structure):
    _fields_ = [("f_bsize", ctypes.c_ulong), ("f_frsize", ctypes.c_ulong), ("f_blocks", ctypes.c_uint64),
                ("f_bfree", ctypes.c_uint64), ("f_bavail", ctypes.c_uint64), ("f_files", ctypes.c_uint64),
                ("f_ffree", ctypes.c_uint64), ("f_favail", ctypes.c_uint64), ("f_fsid", ctypes.c_ulong),
                ("f_flag", ctypes.c_ulong), ("f_namemax", ctypes.c_ulong), ("_spare", ctypes.c_int * 6)]


class EntryParam(ctypes.Structure):
    _fields_ = [("ino", c_ino), ("generation", ctypes.c_uint64), ("attr", Stat),
                ("attr_timeout", ctypes.c_double), ("entry_timeout", ctypes.c_double)]


class FileInfo(ctypes.Structure):
    """struct fuse_file_info as 3.17 has it (3.14's is a prefix): the filesystem
    reads flags and answers with fh and the open flags (bits of `bits`)."""
    _fields_ = [("flags", ctypes.c_int32), ("bits", ctypes.c_uint32), ("_pad", ctypes.c_uint32 * 2),
                ("fh", ctypes.c_uint64), ("lock_owner", ctypes.c_uint64), ("poll_events", ctypes.c_uint32),
                ("backing_id", ctypes.c_int32), ("compat_flags", ctypes.c_uint64),
                ("_reserved", ctypes.c_uint64 * 2)]


# Bits of FileInfo.bits (writepage, direct_io, keep_cache, flush, nonseekable,
# flock_release: the same in 3.14 and 3.17).
KEEP_CACHE = 1 << 2
FLUSH = 1 << 3
FLOCK_RELEASE = 1 << 5


class Ctx(ctypes.Structure):
    _fields_ = [("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("pid", ctypes.c_int32),
                ("umask", ctypes.c_uint32)]


class Buf(ctypes.Structure):
    """struct fuse_buf (3.17 appends mem_size; a larger struct is harmless to 3.14)."""
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p), ("fd", ctypes.c_int),
                ("pos", ctypes.c_int64), ("mem_size", ctypes.c_size_t)]


class Args(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)), ("allocated", ctypes.c_int)]


P_FI = ctypes.POINTER(FileInfo)
_V = None  # void return

# Prototypes of the operations nfs.client implements, by field name.
PROTOTYPES: dict[str, tuple] = {
    "lookup": (c_req, c_ino, ctypes.c_char_p),
    "forget": (c_req, c_ino, ctypes.c_uint64),
    "getattr": (c_req, c_ino, P_FI),
    "setattr": (c_req, c_ino, ctypes.POINTER(Stat), ctypes.c_int, P_FI),
    "readlink": (c_req, c_ino),
    "mkdir": (c_req, c_ino, ctypes.c_char_p, ctypes.c_uint32),
    "unlink": (c_req, c_ino, ctypes.c_char_p),
    "rmdir": (c_req, c_ino, ctypes.c_char_p),
    "symlink": (c_req, ctypes.c_char_p, c_ino, ctypes.c_char_p),
    "rename": (c_req, c_ino, ctypes.c_char_p, c_ino, ctypes.c_char_p, ctypes.c_uint),
    "link": (c_req, c_ino, c_ino, ctypes.c_char_p),
    "open": (c_req, c_ino, P_FI),
    "read": (c_req, c_ino, ctypes.c_size_t, ctypes.c_int64, P_FI),
    "write": (c_req, c_ino, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64, P_FI),
    "release": (c_req, c_ino, P_FI),
    "fsync": (c_req, c_ino, ctypes.c_int, P_FI),
    "opendir": (c_req, c_ino, P_FI),
    "readdir": (c_req, c_ino, ctypes.c_size_t, ctypes.c_int64, P_FI),
    "releasedir": (c_req, c_ino, P_FI),
    "statfs": (c_req, c_ino),
    "create": (c_req, c_ino, ctypes.c_char_p, ctypes.c_uint32, P_FI),
    "flush": (c_req, c_ino, P_FI),
    "getlk": (c_req, c_ino, P_FI, ctypes.c_void_p),
    "setlk": (c_req, c_ino, P_FI, ctypes.c_void_p, ctypes.c_int),
    "flock": (c_req, c_ino, P_FI, ctypes.c_int),
}

# struct fuse_lowlevel_ops in order (3.0 .. 3.14; 3.17 appends tmpfile).
OP_NAMES = ("init destroy lookup forget getattr setattr readlink mknod mkdir unlink rmdir symlink rename link "
            "open read write flush release fsync opendir readdir releasedir fsyncdir statfs setxattr getxattr "
            "listxattr removexattr access create getlk setlk bmap ioctl poll write_buf retrieve_reply "
            "forget_multi flock fallocate readdirplus copy_file_range lseek").split()
CFUNCS = {name: ctypes.CFUNCTYPE(_V, *args) for name, args in PROTOTYPES.items()}


class LowLevelOps(ctypes.Structure):
    _fields_ = [(name, CFUNCS.get(name, ctypes.c_void_p)) for name in OP_NAMES]


def _fn(name: str, restype, *argtypes) -> Callable:
    f = getattr(lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


session_new = _fn("fuse_session_new", ctypes.c_void_p, ctypes.POINTER(Args), ctypes.POINTER(LowLevelOps),
                  ctypes.c_size_t, ctypes.c_void_p)
session_mount = _fn("fuse_session_mount", ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)
session_fd = _fn("fuse_session_fd", ctypes.c_int, ctypes.c_void_p)
session_exited = _fn("fuse_session_exited", ctypes.c_int, ctypes.c_void_p)
session_receive_buf = _fn("fuse_session_receive_buf", ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(Buf))
session_process_buf = _fn("fuse_session_process_buf", _V, ctypes.c_void_p, ctypes.POINTER(Buf))
session_unmount = _fn("fuse_session_unmount", _V, ctypes.c_void_p)
session_destroy = _fn("fuse_session_destroy", _V, ctypes.c_void_p)
set_signal_handlers = _fn("fuse_set_signal_handlers", ctypes.c_int, ctypes.c_void_p)
remove_signal_handlers = _fn("fuse_remove_signal_handlers", _V, ctypes.c_void_p)
req_ctx = _fn("fuse_req_ctx", ctypes.POINTER(Ctx), c_req)
req_getgroups = _fn("fuse_req_getgroups", ctypes.c_int, c_req, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32))

reply_err = _fn("fuse_reply_err", ctypes.c_int, c_req, ctypes.c_int)
reply_none = _fn("fuse_reply_none", _V, c_req)
reply_entry = _fn("fuse_reply_entry", ctypes.c_int, c_req, ctypes.POINTER(EntryParam))
reply_create = _fn("fuse_reply_create", ctypes.c_int, c_req, ctypes.POINTER(EntryParam), P_FI)
reply_attr = _fn("fuse_reply_attr", ctypes.c_int, c_req, ctypes.POINTER(Stat), ctypes.c_double)
reply_readlink = _fn("fuse_reply_readlink", ctypes.c_int, c_req, ctypes.c_char_p)
reply_open = _fn("fuse_reply_open", ctypes.c_int, c_req, P_FI)
reply_write = _fn("fuse_reply_write", ctypes.c_int, c_req, ctypes.c_size_t)
reply_buf = _fn("fuse_reply_buf", ctypes.c_int, c_req, ctypes.c_void_p, ctypes.c_size_t)
reply_lock = _fn("fuse_reply_lock", ctypes.c_int, c_req, ctypes.c_void_p)
req_interrupted = _fn("fuse_req_interrupted", ctypes.c_int, c_req)
reply_statfs = _fn("fuse_reply_statfs", ctypes.c_int, c_req, ctypes.POINTER(StatVFS))
notify_inval_inode = _fn("fuse_lowlevel_notify_inval_inode", ctypes.c_int, ctypes.c_void_p, c_ino,
                         ctypes.c_int64, ctypes.c_int64)
notify_inval_entry = _fn("fuse_lowlevel_notify_inval_entry", ctypes.c_int, ctypes.c_void_p, c_ino,
                         ctypes.c_char_p, ctypes.c_size_t)

# struct fuse_dirent (linux/fuse_kernel.h): what a READDIR reply holds, each
# entry padded to 8 bytes. Packed here rather than by fuse_add_direntry, one
# C call per entry, which made a listing cost ~20 us an entry under load.
_DIRENT = struct.Struct("<QqII")


def direntry(name: bytes, ino: int, dtype: int, off: int) -> bytes:
    """One entry of a READDIR reply: `off` is where the next one starts."""
    n = _DIRENT.size + len(name)
    return _DIRENT.pack(ino, off, len(name), dtype) + name + b"\0" * (-n % 8)


# The request loop stays awake this long after a request for the next one,
# and serves its other sources (inotify, profile switches) at least this often.
# A caller's next request comes 50 to 200 us after the reply on this VM (its
# wake-up): at 50 us the reader slept about once per create, and creates ran
# a fifth slower with workers.
SPIN_S = 200e-6
OTHERS_S = 0.005
# With workers: how long the reading thread may serve one request before
# another thread takes over the reading, and how long it waits idle before
# the thread watching it sleeps too (Relay). The watcher wakes every
# TAKEOVER_S while the reader is busy, which costs the reader the GIL (at
# 0.5 ms, a fifth of the create rate): requests known to be slow hand the
# reading over before they start (SLOW_OPS), and this is for the rest.
TAKEOVER_S = 0.02
DOZE_S = 0.1

# setattr's to_set bits (fuse_lowlevel.h FUSE_SET_ATTR_*).
SET_MODE, SET_UID, SET_GID, SET_SIZE, SET_ATIME, SET_MTIME = 1, 2, 4, 8, 16, 32
SET_ATIME_NOW, SET_MTIME_NOW = 128, 256


def caller_groups(req) -> tuple[int, ...]:
    """The supplementary groups of the process behind `req` (from /proc);
    none if it is gone."""
    size = 64
    while True:
        arr = (ctypes.c_uint32 * size)()
        n = req_getgroups(req, size, arr)
        if n < 0:
            return ()
        if n <= size:
            return tuple(arr[:n])
        size = n


def fill_stat(s: Stat, *, ino: int, mode: int, nlink: int, uid: int, gid: int, size: int, blocks: int,
              atime_ns: int, mtime_ns: int, ctime_ns: int) -> Stat:
    s.st_ino, s.st_mode, s.st_nlink, s.st_uid, s.st_gid = ino, mode, nlink, uid, gid
    s.st_size, s.st_blocks, s.st_blksize = size, blocks, 4096
    for field, ns in (("st_atim", atime_ns), ("st_mtim", mtime_ns), ("st_ctim", ctime_ns)):
        ts = getattr(s, field)
        ts.tv_sec, ts.tv_nsec = divmod(ns, 1_000_000_000)
    return s


class _Debt(threading.local):
    debt = 0.0  # a class default: read without a failed lookup


class Replies:
    """Answers requests at once or, when a request ran up modelled latency
    (`charge`), once that latency is over: from a thread of its own, so that
    the request loop serves other callers meanwhile, as an NFS client keeps
    many calls in flight."""

    def __init__(self) -> None:
        self._local = _Debt()  # each serving thread's request has its own debt
        self._due: list[tuple[float, int, Callable, tuple, Callable | None]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        threading.Thread(target=self._run, daemon=True, name="replies").start()

    @property
    def debt(self) -> float:
        """Seconds the request this thread is handling has run up."""
        return self._local.debt

    @debt.setter
    def debt(self, seconds: float) -> None:
        self._local.debt = seconds

    def charge(self, seconds: float) -> None:
        self.debt += seconds

    def send(self, fn: Callable, *args, on_fail: Callable[[], None] | None = None) -> None:
        """`fn(*args)` (a fuse_reply_*) now or when due; `on_fail()` if the
        caller is gone by then (interrupted)."""
        if self.debt <= 0:
            _deliver(fn, args, on_fail)
            return
        with self._cv:
            heapq.heappush(self._due, (time.monotonic() + self.debt, next(self._seq), fn, args, on_fail))
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._cv.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, fn, args, on_fail = heapq.heappop(self._due)
            # This thread must outlive any one reply.
            survive(functools.partial(_deliver, fn, args, on_fail), "a delayed reply")


def _deliver(fn: Callable, args: tuple, on_fail: Callable[[], None] | None) -> None:
    """Send one reply; `on_fail()` if the caller is gone (interrupted)."""
    if fn(*args) != 0 and on_fail is not None:
        on_fail()


def survive(fn: Callable[[], object], what: str) -> None:
    """Run `fn()`; an exception is logged and the caller's loop goes on (a
    dead thread or loop would silently stop replies, coherence or switches)."""
    try:
        fn()
    except Exception:
        logging.getLogger("minihpc-nfs").exception("%s failed; going on", what)


def serve_source(fn: Callable[[], None]) -> None:
    """One of the loop's other sources (inotify, profile switches), readable."""
    survive(fn, getattr(fn, "__name__", "a source"))


# Requests the reading thread serves itself: the session's own (INIT,
# DESTROY, INTERRUPT, which must overtake what it interrupts) and FORGETs,
# which only count references down.
FUSE_FORGET, FUSE_INIT, FUSE_INTERRUPT, FUSE_DESTROY, FUSE_BATCH_FORGET = 2, 26, 36, 38, 42
INLINE_OPS = frozenset({FUSE_FORGET, FUSE_INIT, FUSE_INTERRUPT, FUSE_DESTROY, FUSE_BATCH_FORGET})
FUSE_FLUSH, FUSE_IOCTL = 25, 39
# struct fuse_out_header: len, error, unique.
_OUT_HEADER = struct.Struct("<IiQ")
# Requests that may take long whoever sends them (an fsync of gigabytes, a
# page of a huge listing, a megabyte written under dirty-page throttling):
# the reader hands the reading on before serving one. WRITE only from BIG_IO
# bytes: small ones are quick, and a create's write is one. A READ hands it
# on itself when the page cache lacks the data (Session.hand_over).
FUSE_WRITE = 16
SLOW_OPS = frozenset({20, 28, 30, 43, 44, 47})  # FSYNC READDIR FSYNCDIR FALLOCATE READDIRPLUS COPY_FILE_RANGE
BIG_IO = 64 * 1024
libc = ctypes.CDLL(None)
libc.free.argtypes = [ctypes.c_void_p]


class Fair:
    """Requests queued per user and taken in turn, one user's at a time: a
    user with many requests waits behind their own, not others' behind
    theirs. One user has at most `per_user` requests in service at once, so
    the others always find a serving thread free."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._queues: dict[int, collections.deque] = {}
        self._turn: collections.deque[int] = collections.deque()  # users with queued requests
        # A plain dict: a Counter's missing key is a Python call, and these
        # run for every request.
        self._busy: dict[int, int] = {}
        self._lock = threading.Lock()

    def _enqueue(self, uid: int, item: object) -> None:
        """Under the lock: `item` waits behind `uid`'s other queued requests."""
        q = self._queues.get(uid)
        if q is None:
            q = self._queues[uid] = collections.deque()
            self._turn.append(uid)
        q.append(item)

    def admit(self, uid: int, item: object) -> bool:
        """Whether a request of `uid` just read may be served at once; if not,
        it is queued (`item`), in the same step: a request of this user
        finishing in between then finds it."""
        with self._lock:
            busy = self._busy.get(uid, 0)
            if busy < self.per_user and uid not in self._queues:
                self._busy[uid] = busy + 1
                return True
            self._enqueue(uid, item)
            return False

    def take_nowait(self) -> tuple[int, object] | None:
        with self._lock:
            return self._next()

    def _next(self) -> tuple[int, object] | None:
        """Under the lock: the next queued request whose user has room."""
        for _ in range(len(self._turn)):
            uid = self._turn[0]
            self._turn.rotate(-1)
            busy = self._busy.get(uid, 0)
            if busy < self.per_user:
                q = self._queues[uid]
                item = q.popleft()
                if not q:
                    del self._queues[uid]
                    self._turn.remove(uid)
                self._busy[uid] = busy + 1
                return uid, item
        return None

    def done(self, uid: int) -> None:
        with self._lock:
            busy = self._busy[uid] - 1
            if busy:
                self._busy[uid] = busy
            else:
                del self._busy[uid]


class Gate:
    """Requests pass while it is open (`enter`, then `leave`); `closed()`
    waits for those in service to end and holds the next ones back until it
    is done. Every request passes it, so the open gate costs one plain lock
    each way (no context manager, no Condition): with Fair's and Relay's
    calls on Conditions, a request libfuse answers itself took 22 us to
    answer with workers, 5 us without."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._in = 0
        self._shut = False

    def enter(self) -> None:
        with self._lock:
            if not self._shut:
                self._in += 1
                return
        with self._cv:
            while self._shut:
                self._cv.wait()
            self._in += 1

    def leave(self) -> None:
        with self._lock:
            self._in -= 1
            if not self._in and self._shut:
                self._cv.notify_all()

    @contextlib.contextmanager
    def closed(self) -> Iterator[None]:
        with self._cv:
            self._shut = True
            while self._in:
                self._cv.wait()
        try:
            yield
        finally:
            with self._cv:
                self._shut = False
                self._cv.notify_all()


class Relay:
    """Which worker reads requests. The reader serves what it reads itself,
    as the single-threaded loop does: handing each request to another thread
    costs a wake-up, which on a VM halves the rate of small requests. Before
    a request known to be slow (SLOW_OPS) it resigns: another thread reads
    while it serves. One more thread watches it and takes over the reading
    once the reader has been serving one request for TAKEOVER_S, so a request
    slow for once delays the next ones by that much at most. The other workers
    sleep until a takeover leaves no watcher. The watcher looks every
    TAKEOVER_S while the reader is busy, and sleeps once the reader has waited
    DOZE_S for requests: a wake-up per burst of requests, not per request."""

    def __init__(self) -> None:
        self._lock = lock = threading.Lock()  # the reader's calls take it plainly (cheaper)
        self._watch = threading.Condition(lock)
        self._sleep = threading.Condition(lock)
        self._reader: int | None = None
        self._watcher: int | None = None
        self._since: float | None = None  # when the reader began serving its request
        self._parked = True  # the reader waits for requests (or there is none)
        self._dozing = False  # the watcher sleeps until the reader is unparked
        self._parked_at = 0.0
        self.stopped = False
        self.takeovers = 0

    def become_reader(self, me: int) -> bool:
        """Wait until `me` is the reader (True) or the session ends (False)."""
        with self._watch:
            while not self.stopped:
                if self._reader is None:
                    self._lead(me)
                    return True
                if self._watcher not in (None, me):
                    self._sleep.wait()
                    continue
                self._watcher = me
                if self._parked and time.perf_counter() - self._parked_at > DOZE_S:
                    self._dozing = True
                    self._watch.wait()
                    self._dozing = False
                elif self._parked or self._since is None:
                    # Parked a moment ago, or between requests: it may start a
                    # slow one without a word, so look again soon.
                    self._watch.wait(TAKEOVER_S)
                elif time.perf_counter() - self._since < TAKEOVER_S:
                    self._watch.wait(self._since + TAKEOVER_S - time.perf_counter())
                else:
                    self.takeovers += 1
                    self._lead(me)
                    return True
            return False

    def _lead(self, me: int) -> None:
        """Under the lock: `me` reads from now on; a sleeper becomes the watcher."""
        self._reader, self._since, self._parked = me, None, False
        if self._watcher == me:
            self._watcher = None
        self._sleep.notify()

    def parked(self, me: int, parked: bool) -> None:
        """The reader waits for requests (True), or has one again (False)."""
        with self._watch:
            if self._reader == me:
                self._parked = parked
                if parked:
                    self._parked_at = time.perf_counter()
                elif self._dozing:
                    self._watch.notify()

    def serving(self, me: int) -> None:
        with self._lock:
            if self._reader == me:
                self._since = time.perf_counter()

    def served(self, me: int) -> bool:
        """Whether `me`, done with its request, is still the reader."""
        with self._lock:
            if self._reader != me:
                return False
            self._since = None
            return True

    def resign(self, me: int) -> None:
        """`me` stops reading (a slow request to serve, or it failed): the
        watcher or a sleeper takes over."""
        with self._watch:
            if self._reader == me:
                self._reader, self._since = None, None
                self._watch.notify()
                self._sleep.notify()

    def stop(self) -> None:
        with self._watch:
            self.stopped = True
            self._watch.notify_all()
            self._sleep.notify_all()


class Session:
    """One mounted filesystem: `handlers` maps an operation name to a Python
    callable with that operation's C arguments. A handler must answer its
    request exactly once; an exception it raises is answered as an errno.

    With `workers`, that many threads take turns reading requests (Relay)
    and serve them, fairly across users (Fair): libfuse's replies are thread-safe (its
    multi-threaded loop serves requests from many threads the same way) and,
    like that loop, nothing orders one request's reply against another's. So
    whatever must reach the kernel before a reply (an invalidation) is sent
    before it by whoever sends that reply (nfs.client: _told)."""

    def __init__(self, handlers: dict[str, Callable], mountpoint: str, options: list[str],
                 workers: int = 0, quick: dict[int, Callable[[object], int | None]] | None = None) -> None:
        self.mountpoint = mountpoint
        # opcode: quick(head) (the request's words, as uint32): the answer, 0
        # or an errno, when the request needs nothing done; the reading thread
        # then sends it straight to the kernel. None: served as any other.
        # For requests every create makes that mostly need nothing (the FLUSH
        # of its close, the IOCTL of isatty): a fair turn, a worker's watch
        # and the library's dispatch cost each about 5 us of a 20 us answer.
        self.quick = quick or {}
        self.replies = Replies()
        self.workers = workers
        self.fair = Fair(max(1, workers // 2))
        self.relay = Relay()
        self._keep_session = False
        self._others_lock = threading.Lock()
        self.gate = Gate()
        self._bufs: list[Buf] = []  # spare request buffers (libfuse allocates their memory)
        self._bufs_lock = threading.Lock()
        self.ops = LowLevelOps()
        self._keep = []  # the C callbacks must outlive the session
        for name, handler in handlers.items():
            cb = CFUNCS[name](self._guard(name, handler))
            self._keep.append(cb)
            setattr(self.ops, name, cb)
        argv = [b"minihpc-nfs", b"-o", ",".join(options).encode()]
        self._argv = (ctypes.c_char_p * len(argv))(*argv)
        args = Args(len(argv), self._argv, 0)
        self.se = session_new(ctypes.byref(args), ctypes.byref(self.ops), ctypes.sizeof(self.ops), None)
        if not self.se:
            raise OSError(errno.EINVAL, f"fuse_session_new refused the options {options}")

    def _guard(self, name: str, handler: Callable) -> Callable:
        if name == "forget":
            def forget(req, *args):
                try:
                    handler(*args)
                finally:
                    reply_none(req)
            return forget

        replies = self.replies

        def call(req, *args):
            replies.debt = 0.0
            try:
                handler(req, *args)
            except OSError as e:
                replies.send(reply_err, req, e.errno or errno.EIO)
            except Exception:  # a bug must not hang the caller's syscall
                logging.getLogger("minihpc-nfs").exception("%s failed", name)
                replies.send(reply_err, req, errno.EIO)
        return call

    def run(self, others: dict[int, Callable[[], None]]) -> int:
        """Mount, serve until unmounted or signalled, unmount. The loop is
        fuse_session_loop's, plus `others[fd]()` whenever `fd` is readable:
        one thread serves all, so they never wait on each other for the GIL."""
        if set_signal_handlers(self.se) != 0:
            raise OSError(errno.EIO, "fuse_set_signal_handlers failed")
        try:
            if session_mount(self.se, os.fsencode(self.mountpoint)) != 0:
                raise OSError(errno.EIO, f"cannot mount on {self.mountpoint} (is /dev/fuse there?)")
            try:
                return self._loop(others)
            finally:
                session_unmount(self.se)
        finally:
            remove_signal_handlers(self.se)
            if not self._keep_session:  # else a worker is still in it: left to the exit
                session_destroy(self.se)
                self.se = None

    def _loop(self, others: dict[int, Callable[[], None]]) -> int:
        if self.workers:
            return self._loop_workers(others)
        fuse_fd = session_fd(self.se)
        self._buf = Buf()
        os.set_blocking(fuse_fd, False)
        poller = select.poll()
        for fd in (fuse_fd, *others):
            poller.register(fd, select.POLLIN)
        while not session_exited(self.se):
            # A timeout, so that a signal libfuse's handler caught (Python
            # retries the interrupted poll) still ends the loop.
            for fd, _ in poller.poll(1000):
                if fd != fuse_fd:
                    serve_source(others[fd])
                    continue
                ended = self._burst(poller, others)
                if ended is not None:
                    return ended
        return 0

    def _burst(self, poller: select.poll, others: dict[int, Callable[[], None]]) -> int | None:
        """Serve requests until none has come for SPIN_S; the loop's exit code
        if the session ended. Waiting a few microseconds awake for the caller's
        next request spares a wake-up per request, which on a VM costs more
        than the spin; the other sources are still served every OTHERS_S."""
        now = time.perf_counter
        idle_until = now() + SPIN_S
        others_due = now() + OTHERS_S
        while True:
            res = session_receive_buf(self.se, ctypes.byref(self._buf))
            if res > 0:
                if not self._answered_quickly(ctypes.cast(self._buf.mem, ctypes.POINTER(ctypes.c_uint32))):
                    session_process_buf(self.se, ctypes.byref(self._buf))
                idle_until = now() + SPIN_S
            elif res == -errno.EAGAIN or res == -errno.EINTR:
                if now() > idle_until:
                    return None
            else:  # 0: unmounted; else an error
                return -res
            if now() > others_due:
                for fd, _ in poller.poll(0):
                    if fd in others:
                        serve_source(others[fd])
                others_due = now() + OTHERS_S

    def _loop_workers(self, others: dict[int, Callable[[], None]]) -> int:
        """`workers` threads take turns reading requests (Relay); whichever
        reads also serves the other sources, as the single thread does
        (waking another thread for each inotify event costs as much)."""
        os.set_blocking(session_fd(self.se), False)
        self._ended = 0
        self._others = others
        threads = [threading.Thread(target=self._worker, daemon=True, name=f"worker {i}")
                   for i in range(self.workers)]
        for t in threads:
            t.start()
        try:
            while not session_exited(self.se) and not self.relay.stopped:
                time.sleep(1)
        finally:
            self.relay.stop()
            # The session is freed after this returns: no worker may still use it.
            deadline = time.monotonic() + 5
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            self._keep_session = any(t.is_alive() for t in threads)
        return self._ended

    def _worker(self) -> None:
        me = threading.get_ident()
        buf = Buf()
        while not self.relay.stopped:
            try:
                queued = self.fair.take_nowait()
                if queued is not None:
                    self._serve(*queued)  # type: ignore[arg-type]
                elif self.relay.become_reader(me):
                    buf = self._read(me, buf)
            except Exception:  # the reading must go on whatever went wrong here
                logging.getLogger("minihpc-nfs").exception("a worker failed; going on")
                self.relay.resign(me)
                time.sleep(0.1)  # a bug that fails every time must not spin

    def _read(self, me: int, buf: Buf) -> Buf:
        """Read requests and serve each here, as long as this thread is the
        reader; returns the buffer to read into next."""
        fuse_fd = session_fd(self.se)
        everything, fuse_only = select.poll(), select.poll()
        for fd in (fuse_fd, *self._others):
            everything.register(fd, select.POLLIN)
        fuse_only.register(fuse_fd, select.POLLIN)
        now = time.perf_counter
        idle_until = now() + SPIN_S
        others_due = now() + OTHERS_S
        while not self.relay.stopped:
            if now() > others_due:
                if not self._serve_others(me, everything.poll(0)):
                    return buf
                others_due = now() + OTHERS_S
            res = session_receive_buf(self.se, ctypes.byref(buf))
            if res == -errno.EAGAIN or res == -errno.EINTR:
                if now() > idle_until:  # spun long enough: sleep until something comes
                    self.relay.parked(me, True)
                    if self._others_lock.locked():  # the reader before is at them: not this one
                        ready = fuse_only.poll(OTHERS_S * 1000)
                    else:
                        ready = everything.poll(1000)
                    self.relay.parked(me, False)
                    if self.relay.stopped or session_exited(self.se):
                        break
                    if not self._serve_others(me, ready):
                        return buf
                    idle_until = now() + SPIN_S
                continue
            if res <= 0:  # 0: unmounted; else an error
                self._ended = -res
                break
            idle_until = now() + SPIN_S
            head = ctypes.cast(buf.mem, ctypes.POINTER(ctypes.c_uint32))
            opcode, uid = head[1], head[6]  # struct fuse_in_header: len, opcode, unique, nodeid, uid
            if self._answered_quickly(head):
                continue
            if opcode in INLINE_OPS:
                survive(functools.partial(session_process_buf, self.se, ctypes.byref(buf)), "a request")
            elif not self.fair.admit(uid, buf):
                with self._bufs_lock:
                    buf = self._bufs.pop() if self._bufs else Buf()
            elif opcode in SLOW_OPS or (opcode == FUSE_WRITE and head[14] >= BIG_IO):
                # head[14]: fuse_write_in's size, after the header
                self.relay.resign(me)
                self._serve(uid, buf, keep=True)
                return buf
            else:
                self.relay.serving(me)
                self._serve(uid, buf, keep=True)
                if not self.relay.served(me):
                    return buf  # it took too long: another thread reads now
        self.relay.stop()
        return buf

    def _answered_quickly(self, head) -> bool:
        """Whether the request at `head` was one its quick handler answered."""
        quick = self.quick.get(head[1])
        err = None if quick is None else quick(head)
        if err is None:
            return False
        try:
            os.write(session_fd(self.se), _OUT_HEADER.pack(_OUT_HEADER.size, -err, head[2] | head[3] << 32))
        except OSError as e:  # ENOENT: the caller was interrupted meanwhile, and wants no answer
            if e.errno != errno.ENOENT:
                raise
        return True

    def _serve_others(self, me: int, ready: list[tuple[int, int]]) -> bool:
        """Serve the other sources among `ready`, watched like a request;
        whether `me` is still the reader."""
        ready = [fd for fd, _ in ready if fd in self._others]
        # A reader that took over may find its predecessor still at them:
        # one at a time, in the order they came.
        if not ready or not self._others_lock.acquire(blocking=False):
            return True
        try:
            self.relay.serving(me)
            for fd in ready:
                serve_source(self._others[fd])
        finally:
            self._others_lock.release()
        return self.relay.served(me)

    def _serve(self, uid: int, buf: Buf, keep: bool = False) -> None:
        gate = self.gate
        gate.enter()
        try:
            session_process_buf(self.se, ctypes.byref(buf))
        except Exception:  # as survive() does, without a partial per request
            logging.getLogger("minihpc-nfs").exception("a request failed; going on")
        finally:
            gate.leave()
            self.fair.done(uid)
            if not keep:
                self._spare(buf)

    def _spare(self, buf: Buf) -> None:
        with self._bufs_lock:
            if len(self._bufs) < 4 * self.workers:
                self._bufs.append(buf)
                return
        libc.free(buf.mem)

    def hand_over(self) -> None:
        """From a handler about to wait (for the disk): if its thread is the
        reader, another worker reads requests from now on."""
        if self.workers:
            self.relay.resign(threading.get_ident())

    def between_requests(self) -> contextlib.AbstractContextManager[None]:
        """While this holds, no request is in service and none starts: what
        changes here applies to whole requests. (With no workers, the loop's
        own thread is between requests whenever it runs anything else.)"""
        return self.gate.closed()

    def inval_entry(self, parent: int, name: bytes) -> int:
        return notify_inval_entry(self.se, parent, name, len(name)) if self.se else -errno.ENODEV

    def inval_inode(self, ino: int, data: bool) -> int:
        """Drop the kernel's cached attributes of `ino`, and its pages if `data`."""
        return notify_inval_inode(self.se, ino, 0 if data else -1, 0) if self.se else -errno.ENODEV
