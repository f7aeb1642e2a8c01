"""inotify(7) on the backing store, for the client's kernel-cache coherence.

The client watches each directory the kernel holds a node for; every change
under it (by any node, or by root on the volume itself) comes back as
(wd, mask, name) from `events()` once `fd` is readable.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct

from nfs.syscalls import proc

log = logging.getLogger("minihpc-nfs")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE = 0x100, 0x200
IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR = 0x4000, 0x8000, 0x01000000
_EVENT = struct.Struct("iIII")


class Inotify:
    NAMESPACE = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO  # a name came or went
    CONTENT = IN_MODIFY  # a file's data changed: cached pages are stale
    ATTRIB = IN_ATTRIB
    OVERFLOW = IN_Q_OVERFLOW  # events were lost: trust nothing
    # Watches are added through /proc/self/fd/N of the handle, a magic link
    # that must be followed (it lands on that very inode): directories, and
    # files with several names.
    MASK = NAMESPACE | CONTENT | IN_ATTRIB

    def __init__(self) -> None:
        self.fd = _libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)} (fs.inotify.max_user_instances too low?)")

    def add(self, fd: int) -> int:
        """Watch the directory or file `fd` holds; -1 (logged) if it cannot be watched."""
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(proc(fd)), self.MASK)
        if wd < 0:
            e = ctypes.get_errno()
            if e != errno.ENOENT:  # gone already: nothing to keep coherent
                log.error("cannot watch a directory: %s (raise fs.inotify.max_user_watches)", os.strerror(e))
        return wd

    def remove(self, wd: int) -> None:
        _libc.inotify_rm_watch(self.fd, wd)

    def events(self) -> list[tuple[int, int, bytes]]:
        """The events queued now (none if there are none)."""
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        return [e for e in parse(data) if not e[1] & IN_IGNORED]


def parse(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        wd, mask, _cookie, n = _EVENT.unpack_from(data, pos)
        pos += _EVENT.size
        out.append((wd, mask, data[pos:pos + n].rstrip(b"\0")))
        pos += n
    return out
