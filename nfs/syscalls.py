"""The Linux calls the client needs that Python's os module lacks: openat2
confined beneath a directory, *at() calls on an O_PATH handle itself
(AT_EMPTY_PATH), utimensat with UTIME_NOW/UTIME_OMIT per time, renameat2, and
per-thread filesystem credentials (glibc's setgroups changes every thread, the
raw system call only the caller).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# x86_64 system call numbers (nfs.fuse_ll is x86_64-only too).
SYS_SETGROUPS, SYS_OPENAT2, SYS_RENAMEAT2 = 116, 437, 316

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = 0x100, 0x400, 0x1000
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x02, 0x04, 0x08
RENAME_NOREPLACE = 1
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2

# A handle: an O_PATH descriptor of one inode, never of a name.
HANDLE_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


def _check(res: int, what: str, name: bytes | str | None = None) -> int:
    if res < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}", name)
    return res


def proc(fd: int) -> str:
    """The magic link to what `fd` is: resolving it lands on that inode itself,
    whatever names it has now (never on a symlink's target)."""
    return f"/proc/self/fd/{fd}"


def open_beneath(dirfd: int, path: str, flags: int = HANDLE_FLAGS) -> int:
    """openat2 of `path` strictly inside `dirfd`: no `..` out, no symlink
    anywhere on the way (a trailing one is opened itself under O_PATH|O_NOFOLLOW),
    no magic links."""
    how = _OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    rel = path.lstrip("/") or "."
    return _check(_libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(rel), ctypes.byref(how), ctypes.sizeof(how)),
                  "openat2", rel)


def open_handle(dirfd: int, name: bytes) -> int:
    """A handle on the entry `name` of directory `dirfd`, not following it."""
    if name in (b"", b".", b"..") or b"/" in name:
        raise OSError(errno.EINVAL, "not a plain name", name)
    return os.open(name, HANDLE_FLAGS, dir_fd=dirfd)


def chown_handle(fd: int, uid: int, gid: int) -> None:
    _check(_libc.fchownat(fd, b"", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW), "fchownat")


def utimens_handle(fd: int, is_link: bool, times: tuple[int | None, int | None], now: tuple[bool, bool]) -> None:
    """Set (atime, mtime) in ns of the inode `fd` holds: a time may be a value,
    now (`now` flags) or left alone (None). A symlink is changed itself."""
    ts = (_Timespec * 2)()
    for i in range(2):
        if now[i]:
            ts[i].tv_nsec = UTIME_NOW
        elif times[i] is None:
            ts[i].tv_nsec = UTIME_OMIT
        else:
            ts[i].tv_sec, ts[i].tv_nsec = divmod(times[i], 1_000_000_000)  # type: ignore[arg-type]
    if is_link:
        res = _libc.utimensat(fd, b"", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)
    else:
        res = _libc.utimensat(AT_FDCWD, os.fsencode(proc(fd)), ts, 0)
    _check(res, "utimensat")


def link_handle(fd: int, is_link: bool, newdirfd: int, newname: bytes) -> None:
    """A new name for the inode `fd` holds (a symlink is linked itself)."""
    if is_link:
        res = _libc.linkat(fd, b"", newdirfd, newname, AT_EMPTY_PATH)
    else:
        res = _libc.linkat(AT_FDCWD, os.fsencode(proc(fd)), newdirfd, newname, AT_SYMLINK_FOLLOW)
    _check(res, "linkat", newname)


def rename(olddirfd: int, old: bytes, newdirfd: int, new: bytes, flags: int) -> None:
    _check(_libc.syscall(SYS_RENAMEAT2, olddirfd, old, newdirfd, new, flags), "renameat2", old)


def set_thread_creds(uid: int, gid: int, groups: tuple[int, ...]) -> None:
    """This thread's filesystem identity: fsuid, fsgid and supplementary groups.
    An fsuid other than 0 also drops the capabilities that bypass permission
    checks (DAC_OVERRIDE, FOWNER, FSETID, ...); back to 0 restores them."""
    arr = (ctypes.c_uint32 * max(len(groups), 1))(*groups)
    _check(_libc.syscall(SYS_SETGROUPS, len(groups), arr), "setgroups")
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    if _libc.setfsuid(-1) != uid or _libc.setfsgid(-1) != gid:  # -1 reads it back unchanged
        raise OSError(errno.EPERM, f"cannot act as {uid}:{gid}")


# Filesystem handles (name_to_handle_at/open_by_handle_at): an inode named
# by what the filesystem exports, reopened without any path.
MAX_HANDLE_SZ = 128
_HANDLE_HEAD = 8  # struct file_handle: handle_bytes (u32), handle_type (i32), then the bytes


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint32), ("handle_type", ctypes.c_int32),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


def handle_of(fd: int) -> bytes | None:
    """The filesystem handle of the inode `fd` holds, or None if the
    filesystem gives none (then the descriptor must be kept)."""
    fh = _FileHandle(handle_bytes=MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    if _libc.name_to_handle_at(fd, b"", ctypes.byref(fh), ctypes.byref(mount_id), AT_EMPTY_PATH) < 0:
        return None
    return ctypes.string_at(ctypes.addressof(fh), _HANDLE_HEAD + fh.handle_bytes)


def open_by_handle(mount_fd: int, handle: bytes, flags: int = os.O_PATH | os.O_CLOEXEC) -> int:
    """Reopen the inode `handle` names (CAP_DAC_READ_SEARCH: as root); ESTALE
    once that inode is gone. A symlink is opened itself (O_PATH)."""
    buf = ctypes.create_string_buffer(handle, len(handle))
    return _check(_libc.open_by_handle_at(mount_fd, buf, flags), "open_by_handle_at")


SYS_GETDENTS64 = 217
_DIRENT = struct.Struct("QqHB")  # d_ino, d_off, d_reclen, d_type; then the name, NUL-terminated


def getdents(fd: int, offset: int, size: int) -> list[tuple[bytes, int, int, int]]:
    """Up to `size` bytes of entries of the directory `fd` from the position
    `offset` (0, or a d_off cookie it gave): (name, inode, d_type, next
    offset) each. Nothing is kept between calls: a listing costs no memory."""
    os.lseek(fd, offset, os.SEEK_SET)
    buf = ctypes.create_string_buffer(max(size, 1024))
    n = _check(_libc.syscall(SYS_GETDENTS64, fd, buf, len(buf)), "getdents64")
    raw, out, pos = buf.raw[:n], [], 0
    while pos < n:
        ino, off, reclen, dtype = _DIRENT.unpack_from(raw, pos)
        name = raw[pos + _DIRENT.size:pos + reclen].split(b"\0", 1)[0]
        out.append((name, ino, dtype, off))
        pos += reclen
    return out


def pread_cached(fd: int, size: int, offset: int) -> bytearray | None:
    """Up to `size` bytes at `offset` if the page cache holds them all (or
    all up to the end of the file); None if reading them would wait for the
    disk (RWF_NOWAIT), or the filesystem cannot tell. Read in place, not
    copied again (a read from the cache costs little more than the copy)."""
    buf = bytearray(size)
    got = 0
    with memoryview(buf) as view:
        while got < size:
            try:
                n = os.preadv(fd, [view[got:]], offset + got, os.RWF_NOWAIT)
            except BlockingIOError:
                return None
            except OSError as e:
                if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    return None
                raise
            if n == 0:
                break
            got += n
    del buf[got:]
    return buf
