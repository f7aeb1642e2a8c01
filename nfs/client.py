"""The NFS-style client: a FUSE filesystem over the backing store, run on every
node, applying the behaviour model (nfs.model) of the active profile.

    python -m nfs.client --backing /srv/nfs/export --mountpoint /shared \
        --control /srv/nfs/control/profile.json --node c1

It speaks libfuse's low-level protocol (nfs.fuse_ll): the client owns the node
ids the kernel sees, so it can tell the kernel exactly which entry or inode
went stale.

Kernel-side caching depends on the profile. When the profile gives the model
something to decide (caching, delay, latency, faults), every kernel cache
timeout is 0, so each lookup and stat reaches the model. A pass-through
profile (`off`) lets the kernel cache entries, attributes and pages, and keeps
them coherent with the other nodes by watching the backing store with inotify:
what any node changes is invalidated here within milliseconds.

Safe for any user (the daemon runs as root, with allow_other): every request
runs with its caller's fsuid, fsgid and groups (nfs.creds), so the backing
filesystem checks permissions and owns new files as on a local disk; every
operation goes through a handle on the inode the kernel named, or its parent's
handle and a plain name (nfs.nodes), never through a path a user's symlink
could redirect; and one user may hold only so many open files.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import logging
import os
import queue
import resource
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nfs import fuse_ll as ll
from nfs.creds import Credentials
from nfs.faults import claim_in
from nfs.locks import Flock, Locks, open_for_locks
from nfs.model import Attrs, BeneathStore, NodeModel
from nfs.nodes import ROOT_ID, Fingerprint, Node, NodeTable, fingerprint
from nfs.notify import Inotify
from nfs.profiles import Profile, ProfileError, claims_dir, read_active
from nfs.syscalls import (
    chown_handle,
    getdents,
    link_handle,
    open_by_handle,
    open_handle,
    pread_cached,
    proc,
    rename,
    utimens_handle,
)

log = logging.getLogger("minihpc-nfs")

# How long the kernel may trust what a pass-through profile told it; inotify
# invalidates anything another node changes long before this.
KERNEL_TTL = 300.0
# Threads serving requests (--workers): with N, one user's slow request (an
# fsync of gigabytes) holds at most N/2 of them, so the others always find
# one free. 0: the reading thread serves every request.
WORKERS = 8
# With workers, how long one thread holds the GIL while another waits for it
# (Python's default is 5 ms): a quick request then waits that long at most
# behind a page of another user's listing being built (3.6x idle -> 2.6x).
SWITCH_S = 0.0005
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC


def _stat(a: Attrs) -> ll.Stat:
    return ll.fill_stat(ll.Stat(), ino=a.ino, mode=a.mode, nlink=a.nlink, uid=a.uid, gid=a.gid, size=a.size,
                        blocks=a.blocks, atime_ns=a.atime_ns, mtime_ns=a.mtime_ns, ctime_ns=a.ctime_ns)


def kernel_may_cache(p: Profile) -> bool:
    """Pass-through: nothing for the model to decide, so the kernel may cache."""
    return (p.noac and p.lookupcache == "none" and p.delay == 0 and not p.faults
            and p.rtt_ms == p.jitter_ms == p.meta_ms == p.bandwidth_mbs == 0)


class SharedFS:
    def __init__(self, root_fd: int, model: NodeModel, inotify: Inotify, max_handles: int,
                 mount_fd: int = -1, max_nodes_open: int = 0, max_handles_total: int = 0) -> None:
        self.m, self.inotify = model, inotify
        self.creds = Credentials(ll.caller_groups)
        self._mount_fd = mount_fd
        self.nodes = NodeTable(root_fd, _RootWatch(inotify, self.creds),
                               reopen=self._reopen if mount_fd >= 0 else None, max_open=max_nodes_open,
                               privileged=self.creds.as_root)
        self.handles = Handles(max_handles, max_handles_total)
        self.session: ll.Session | None = None
        # Invalidations go to the kernel from a thread of their own: one sent
        # from the request loop could wait for a lock held by a caller whose
        # request that loop has yet to answer.
        self._stale: queue.SimpleQueue = queue.SimpleQueue()
        # Held while deciding an invalidation of a file's data and queueing
        # it: what inotify reports and what a lock grant or an open tells the
        # kernel are then queued in the order they were decided (see _told).
        self._coherence = threading.Lock()
        self._switches: queue.SimpleQueue = queue.SimpleQueue()
        self._switch_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.ttl = KERNEL_TTL if kernel_may_cache(model.profile) else 0.0
        self.locks = Locks(self._open_for_locks, self.handles.close)
        self._writing: Counter[int] = Counter()  # nodes this node is writing now
        self._writes_lock = threading.Lock()

    # -- replies -------------------------------------------------------------

    def _entry(self, req, parent: int, name: bytes, path: str, a: Attrs, fd: int | None = None,
               nid: int | None = None, opened: int | None = None, s: os.stat_result | None = None) -> None:
        """Answer a lookup or a creation with the node of handle `fd` (stat `s`
        if known) or the known node `nid`; `opened`: the file descriptor a
        create opened."""
        nid = self.nodes.remember(parent, name, path, fingerprint(a), fd=fd, nid=nid, s=s)
        e = ll.EntryParam(ino=nid, generation=0, attr=_stat(a), attr_timeout=self.ttl, entry_timeout=self.ttl)
        # The caller may be gone by the reply (interrupted): then the kernel
        # holds no reference to forget, and nobody will release the file.
        if opened is None:
            self._reply(ll.reply_entry, req, ctypes.byref(e), on_fail=lambda: self.nodes.forget(nid, 1))
        else:
            def gone() -> None:
                self.nodes.forget(nid, 1)
                self.handles.close(opened)
            self._reply(ll.reply_create, req, ctypes.byref(e), self._opened(opened), on_fail=gone)

    def _reply(self, fn, *args, on_fail=None) -> None:
        self.session.replies.send(fn, *args, on_fail=on_fail)  # type: ignore[union-attr]

    @staticmethod
    def _opened(fh: int, bits: int = 0):
        """The open reply's file info: our own copy, since the library's is
        gone once the handler returns and the reply may wait for latency."""
        fi = ll.FileInfo(fh=fh, bits=bits)
        return ctypes.pointer(fi)

    def _made(self, parent: int) -> None:
        """After this node removed a name from `parent`: remember the directory's
        new state, so that inotify's report of it invalidates nothing. (A name
        this node created needs nothing: the report names a child the kernel
        was just told about.)"""
        if self.ttl:
            self.nodes.saw(parent, fingerprint(os.stat(self.nodes.fd(parent))))

    def _ok(self, req) -> None:
        self._reply(ll.reply_err, req, 0)

    def _attrs(self, node: Node, fi=None) -> Attrs:
        """The node's attributes as this client sees them: the model decides
        (caches, delay), the handle answers when it asks the server. A name
        removed everywhere is gone, unless asked through an open file."""
        fh = fi.contents.fh if fi else None
        a = self.m.stat(node.path, handle=fh is not None, server=lambda: _live(node.fd, fh))
        if a.ino != node.ino:  # the model remembers another file by that name
            a = _live(node.fd, fh)
        return a

    # -- lookups and attributes ----------------------------------------------

    def lookup(self, req, parent: int, name: bytes) -> None:
        path = self.nodes.child_path(parent, name)
        self.m.fault("getattr", path)
        pfd = self.nodes.fd(parent)
        fd: int | None = None
        s: os.stat_result | None = None

        def server() -> Attrs:
            nonlocal fd, s
            fd = open_handle(pfd, name)
            s = os.stat(fd)
            return Attrs.from_stat(s)
        try:
            a = self.m.stat(path, server=server)
            if fd is None:  # the model answered from its cache
                nid = self.nodes.known(parent, name, a.ino)
                if nid is not None:  # still that node: keep what the cache says
                    self._entry(req, parent, name, path, a, nid=nid)
                    return
                server()
            if s.st_ino != a.ino:  # type: ignore[union-attr]  # another file by that name: believe the handle
                a = Attrs.from_stat(s)  # type: ignore[arg-type]
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        self._entry(req, parent, name, path, a, fd=fd, s=s)

    def forget(self, ino: int, nlookup: int) -> None:
        self.nodes.forget(ino, nlookup)

    def getattr(self, req, ino: int, fi) -> None:
        node = self.nodes.get(ino)
        self.m.fault("getattr", node.path)
        a = self._attrs(node, fi)
        self.nodes.saw(ino, fingerprint(a))
        if a.nlink > 1 and stat.S_ISREG(a.mode):
            self.nodes.linked(ino)
        self._reply(ll.reply_attr, req, ctypes.byref(_stat(a)), self.ttl)

    def setattr(self, req, ino: int, attr, to_set: int, fi) -> None:
        node = self.nodes.get(ino)
        self.m.fault("setattr", node.path)
        self.m.rpc("setattr")
        s = attr.contents
        with self._own_write(ino):  # like a WRITE: the reply tells the kernel the new state
            if to_set & ll.SET_MODE:
                if node.is_link:
                    raise OSError(errno.EOPNOTSUPP, "a symlink has no mode of its own")
                os.chmod(proc(node.fd), s.st_mode & 0o7777)
            if to_set & (ll.SET_UID | ll.SET_GID):
                chown_handle(node.fd, s.st_uid if to_set & ll.SET_UID else -1,
                             s.st_gid if to_set & ll.SET_GID else -1)
            if to_set & ll.SET_SIZE:
                os.truncate(fi.contents.fh if fi else proc(node.fd), s.st_size)
            if to_set & (ll.SET_ATIME | ll.SET_MTIME | ll.SET_ATIME_NOW | ll.SET_MTIME_NOW):
                utimens_handle(node.fd, node.is_link, *set_times(to_set, s))
            self.m.own_change(node.path, parent=False)
            a = Attrs.from_stat(os.stat(node.fd))
            self.nodes.saw(ino, fingerprint(a))
        self._reply(ll.reply_attr, req, ctypes.byref(_stat(a)), self.ttl)

    def readlink(self, req, ino: int) -> None:
        node = self.nodes.get(ino)
        self.m.fault("readlink", node.path)
        self.m.rpc("readlink")
        self._reply(ll.reply_readlink, req, os.fsencode(os.readlink("", dir_fd=node.fd)))

    def statfs(self, req, ino: int) -> None:
        self.m.fault("statfs", "/")
        s = os.statvfs(self.nodes.fd(ROOT_ID))
        out = ll.StatVFS(f_bsize=s.f_bsize, f_frsize=s.f_frsize, f_blocks=s.f_blocks, f_bfree=s.f_bfree,
                         f_bavail=s.f_bavail, f_files=s.f_files, f_ffree=s.f_ffree, f_favail=s.f_favail,
                         f_flag=s.f_flag, f_namemax=s.f_namemax)
        self._reply(ll.reply_statfs, req, ctypes.byref(out))

    # -- directories -----------------------------------------------------------

    def opendir(self, req, ino: int, fi) -> None:
        node = self.nodes.get(ino)
        self.m.fault("readdir", node.path)
        self.handles.check(self.creds.uid)
        # Opened as the caller: the server checks read permission itself. The
        # descriptor is the directory's handle (flock takes it too); readdir
        # reads from it as the caller asks, so an open directory costs the
        # client nothing however many entries it has.
        handle = os.open(proc(node.fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.handles.take(self.creds.uid, handle)
        except BaseException:
            os.close(handle)
            raise
        self.m.rpc("readdir")
        self._reply(ll.reply_open, req, self._opened(handle), on_fail=lambda: self.handles.close(handle))

    def readdir(self, req, ino: int, size: int, off: int, fi) -> None:
        fh = fi.contents.fh
        out, used = [], 0
        hides = self.m.hides_entries()
        node = self.nodes.get(ino) if hides else None
        while True:
            entries = getdents(fh, off, size)
            if not entries:
                break
            for name, child, dtype, nxt in entries:
                if hides and name not in (b".", b"..") and not self.m.visible(
                        self.nodes.child_path(ino, name), lambda name=name: _child_attrs(node.fd, name)):
                    off = nxt
                    continue
                entry = ll.direntry(name, child, dtype, nxt)
                if used + len(entry) > size:
                    break
                out.append(entry)
                used += len(entry)
                off = nxt
            else:
                continue
            break
        data = b"".join(out)
        self._reply(ll.reply_buf, req, data, len(data))

    def releasedir(self, req, ino: int, fi) -> None:
        fh = fi.contents.fh
        self.locks.released(fh)
        self.handles.close(fh)
        self._ok(req)

    def mkdir(self, req, parent: int, name: bytes, mode: int) -> None:
        path = self.nodes.child_path(parent, name)
        pfd = self.nodes.fd(parent)
        self.m.fault("mkdir", path)
        self.m.rpc("mkdir")
        os.mkdir(name, mode, dir_fd=pfd)
        self._made_entry(req, parent, name, path)

    def _made_entry(self, req, parent: int, name: bytes, path: str) -> None:
        """Answer the creation of parent/name with a handle on what is there now."""
        fd = open_handle(self.nodes.fd(parent), name)
        try:
            s = os.stat(fd)
        except BaseException:
            os.close(fd)
            raise
        self.m.own_change(path)
        self._entry(req, parent, name, path, Attrs.from_stat(s), fd=fd, s=s)

    def rmdir(self, req, parent: int, name: bytes) -> None:
        path = self.nodes.child_path(parent, name)
        self.m.fault("rmdir", path)
        self.m.rpc("rmdir")
        os.rmdir(name, dir_fd=self.nodes.fd(parent))
        self._removed(req, parent, name, path)

    def _removed(self, req, parent: int, name: bytes, path: str) -> None:
        self.m.own_change(path)
        self.nodes.unlinked(parent, name)
        self._made(parent)
        self._ok(req)

    # -- names -------------------------------------------------------------------

    def unlink(self, req, parent: int, name: bytes) -> None:
        path = self.nodes.child_path(parent, name)
        self.m.fault("unlink", path)
        self.m.rpc("remove")
        os.unlink(name, dir_fd=self.nodes.fd(parent))
        self._removed(req, parent, name, path)

    def rename(self, req, parent: int, name: bytes, newparent: int, newname: bytes, flags: int) -> None:
        old, new = self.nodes.child_path(parent, name), self.nodes.child_path(newparent, newname)
        self.m.fault("rename", old)
        if flags & ~RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, "rename flags other than RENAME_NOREPLACE")
        self.m.rpc("rename")
        rename(self.nodes.fd(parent), name, self.nodes.fd(newparent), newname, flags)
        self.m.own_change(old, new)
        self.nodes.moved(parent, name, newparent, newname, new)
        self._made(parent)
        self._made(newparent)
        self._ok(req)

    def symlink(self, req, target: bytes, parent: int, name: bytes) -> None:
        path = self.nodes.child_path(parent, name)
        self.m.fault("symlink", path)
        self.m.rpc("symlink")
        os.symlink(target, name, dir_fd=self.nodes.fd(parent))
        self._made_entry(req, parent, name, path)

    def link(self, req, ino: int, newparent: int, newname: bytes) -> None:
        node, path = self.nodes.get(ino), self.nodes.child_path(newparent, newname)
        self.m.fault("link", path)
        self.m.rpc("link")
        link_handle(node.fd, node.is_link, self.nodes.fd(newparent), newname)
        self.nodes.linked(ino)
        self.m.own_change(path, node.path)
        self._entry(req, newparent, newname, path, Attrs.from_stat(os.stat(node.fd)), nid=ino)

    # -- files -------------------------------------------------------------------

    def create(self, req, parent: int, name: bytes, mode: int, fi) -> None:
        path = self.nodes.child_path(parent, name)
        pfd = self.nodes.fd(parent)
        self.m.fault("create", path)
        self.handles.check(self.creds.uid)
        self.m.rpc("create")
        # Never through a symlink that appeared since the kernel looked.
        fd = os.open(name, fi.contents.flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=pfd)
        handle = -1
        try:
            s = os.stat(fd)
            handle = _handle_of(fd, s, pfd, name)
            self.m.own_change(path)
            self.handles.take(self.creds.uid, fd)
        except BaseException:
            os.close(fd)
            if handle >= 0:
                os.close(handle)
            raise
        self._entry(req, parent, name, path, Attrs.from_stat(s), fd=handle, opened=fd, s=s)

    def open(self, req, ino: int, fi) -> None:
        node = self.nodes.get(ino)
        self.m.fault("open", node.path)
        if node.is_link:
            raise OSError(errno.ELOOP, "a symlink is not opened itself")
        flags = fi.contents.flags
        self.handles.check(self.creds.uid)
        try:
            a = self.m.revalidate(node.path, server=lambda: _live(node.fd))  # close-to-open
        except FileNotFoundError:
            # The kernel still had the name (another node removed it a moment
            # ago): ESTALE makes it look the name up again and retry the open,
            # so that an O_CREAT open creates the file anew, as over NFS.
            raise OSError(errno.ESTALE, "stale file handle", node.path) from None
        fd = os.open(proc(node.fd), (flags & ~OPEN_DROP) | os.O_CLOEXEC)
        self.handles.take(self.creds.uid, fd)
        if flags & WRITE_FLAGS:
            self.m.own_change(node.path, parent=False)
        # Pass-through: pages may outlive the file's close (inotify drops those
        # another node changed). Close-to-open: if the file changed since the
        # kernel was last told (through another name, say, or before inotify
        # said so), its pages and attributes go before the open returns.
        reply = functools.partial(self._reply, ll.reply_open, req, self._opened(fd, ll.KEEP_CACHE if self.ttl else 0),
                                  on_fail=lambda: self.handles.close(fd))
        with self._coherence:
            if self.ttl and a.ino == node.ino and fingerprint(a) != self.nodes.seen(ino):
                self._told(ino, fingerprint(a), reply)
                return
        reply()

    def read(self, req, ino: int, size: int, off: int, fi) -> None:
        self.m.fault("read", self.nodes.path(ino))
        self.m.rpc("read", size)
        cached = pread_cached(fi.contents.fh, size, off)
        if cached is None:  # it waits for the disk: another worker reads requests meanwhile
            self.session.hand_over()  # type: ignore[union-attr]
            data = os.pread(fi.contents.fh, size, off)
            self._reply(ll.reply_buf, req, data, len(data))
            return
        # The reply reads the bytearray where it is (and keeps it while a latency delays it).
        self._reply(ll.reply_buf, req, (ctypes.c_char * len(cached)).from_buffer(cached), len(cached))

    def write(self, req, ino: int, buf: int, size: int, off: int, fi) -> None:
        path = self.nodes.path(ino)
        self.m.fault("write", path)
        self.m.rpc("write", size)
        with self._own_write(ino):
            n = os.pwrite(fi.contents.fh, ctypes.string_at(buf, size), off)
            self.m.own_change(path, parent=False)
            if self.ttl:
                self.nodes.saw(ino, fingerprint(os.fstat(fi.contents.fh)))
        self._reply(ll.reply_write, req, n)

    @contextlib.contextmanager
    def _own_write(self, ino: int) -> Iterator[None]:
        """While this node changes a file, inotify's report of the change is
        its own: the state it leaves is recorded (saw) before this ends."""
        with self._writes_lock:
            self._writing[ino] += 1
        try:
            yield
        finally:
            with self._writes_lock:
                self._writing[ino] -= 1
                if not self._writing[ino]:
                    del self._writing[ino]

    def fsync(self, req, ino: int, datasync: int, fi) -> None:
        self.m.fault("fsync", self.nodes.path(ino))
        self.m.rpc("commit")
        os.fsync(fi.contents.fh)
        self._ok(req)

    def release(self, req, ino: int, fi) -> None:
        f = fi.contents
        if f.bits & ll.FLUSH:
            self.locks.flush(ino, f.lock_owner)
        self.locks.released(f.fh)  # closing it drops its flock locks
        self.handles.close(f.fh)
        self._ok(req)

    # -- locks, shared with every node (nfs.locks) --------------------------------

    def flush(self, req, ino: int, fi) -> None:
        """The caller closed a descriptor: its POSIX locks on the file go."""
        self.locks.flush(ino, fi.contents.lock_owner)
        self._ok(req)

    def quick_flush(self, head) -> int | None:
        """A FLUSH (the request's words, fuse_in_header then fuse_flush_in)
        whose lock owner holds no POSIX lock on the file is answered by the
        reading thread (Session.quick); the rest go the whole way."""
        return None if self.locks.holds(head[4] | head[5] << 32, head[14] | head[15] << 32) else 0

    def getlk(self, req, ino: int, fi, lock: int) -> None:
        node = self.nodes.get(ino)
        out = self.locks.getlk(ino, node.mode, fi.contents.lock_owner, self.creds.uid, Flock.from_address(lock))
        self._reply(ll.reply_lock, req, ctypes.byref(out))

    def setlk(self, req, ino: int, fi, lock: int, sleep: int) -> None:
        node = self.nodes.get(ino)
        lk = Flock.from_address(lock)
        self.locks.setlk(ino, node.mode, fi.contents.lock_owner, self.creds.uid, lk, bool(sleep),
                         self._answer(req, ino, lk.l_type != fcntl.F_UNLCK, fi.contents.fh, node.key),
                         lambda: bool(ll.req_interrupted(req)))

    def flock(self, req, ino: int, fi, op: int) -> None:
        node = self.nodes.get(ino)
        self.locks.flock(fi.contents.fh, op, self._answer(req, ino, not op & fcntl.LOCK_UN, fi.contents.fh, node.key),
                         lambda: bool(ll.req_interrupted(req)))

    def _answer(self, req, ino: int, acquire: bool, fh: int, key: tuple[int, int]):
        """The reply to a lock request on the open file `fh` of inode `key`.
        Taking a lock is where NFS revalidates what it cached (another node
        may have written under that lock): the model's attributes and the
        kernel's pages and attributes of the file are dropped before the
        caller holds the lock, and the state the kernel will read then is
        the one it was told (_told)."""
        def done(err: int) -> None:
            if err or not acquire:
                self._reply(ll.reply_err, req, err)
                return
            try:
                self.m.forget(self.nodes.path(ino))
            except OSError:
                pass
            granted = functools.partial(self._reply, ll.reply_err, req, 0)
            with self._coherence:
                try:
                    s = os.fstat(fh)
                except OSError:
                    s = None
                # The descriptor may have been closed under a wait, its number reused.
                now = fingerprint(s) if s is not None and (s.st_dev, s.st_ino) == key else None
                self._told(ino, now, granted)
        return done

    def _told(self, ino: int, now: Fingerprint | None, then) -> None:
        """Under _coherence: drop the kernel's pages and attributes of `ino`,
        then `then()` (the reply that lets the caller read), recording `now`
        (the file's state at this moment, if known) as the state the kernel
        was told.

        Why the order matters: the kernel drops the attributes of a GETATTR
        reply that an invalidation of the inode overtook (its attr_version
        moved on) and goes on reading with the file size it had, so a read
        cuts the file short. An invalidation must therefore never reach the
        kernel after the reply that lets a caller read, for a change made
        before it: inotify reports a change at any later moment (another
        thread reads its events), so its decision and this one are taken
        under one lock, and recording `now` here makes inotify's late report
        of an earlier change a no-op (nothing changed since)."""
        if now is not None:
            self.nodes.saw(ino, now)
        self._stale.put(("data", ino, b"", then))

    def _open_for_locks(self, ino: int, uid: int) -> int:
        """A descriptor of the node's inode for one lock owner's POSIX locks:
        the client's own (as root), counted against the owner's user."""
        node = self.nodes.get(ino)
        with self.creds.as_root():
            fd = open_for_locks(proc(node.fd), node.mode)
        try:
            self.handles.take(uid, fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- requests run as their callers ------------------------------------------

    def handlers(self) -> dict:
        return {name: self._unpinning(getattr(self, name) if name in NO_CHECKS
                                      else self._as_caller(getattr(self, name))) for name in ll.PROTOTYPES}

    def _as_caller(self, fn):
        creds = self.creds

        def serve(req, *args):
            ctx = ll.req_ctx(req).contents
            creds.caller(req, ctx.uid, ctx.gid, ctx.pid)
            fn(req, *args)
        return serve

    def _unpinning(self, fn):
        """The node descriptors a request used may close once it is answered."""
        unpin = self.nodes.unpin

        def serve(*args):
            try:
                fn(*args)
            finally:
                unpin()
        return serve

    def _reopen(self, handle: bytes) -> int:
        """A node's descriptor again, from its filesystem handle: the client's
        own doing (CAP_DAC_READ_SEARCH), whoever's request needs it."""
        with self.creds.as_root():
            return open_by_handle(self._mount_fd, handle)

    def snapshot(self) -> dict:
        return {**self.m.snapshot(), "nodes": len(self.nodes.nodes), "handles": self.handles.count(),
                "node_fds": self.nodes.open_count(), "node_reopens": self.nodes.reopened,
                "reader_takeovers": self.session.relay.takeovers if self.session else 0}

    # -- coherence -----------------------------------------------------------------

    def serve(self) -> int:
        _thread(self._invalidator, "invalidator")
        return self.session.run({self.inotify.fd: self._unpinning(self.on_inotify),  # type: ignore[union-attr]
                                 self._switch_fd: self._unpinning(self._apply_profile)})

    def switch_profile(self, profile: Profile) -> None:
        """From any thread: the loop applies it between requests (with
        workers, while none is in service), so no reply is cut with the old
        profile's kernel timeouts after it."""
        self._switches.put(profile)
        os.eventfd_write(self._switch_fd, 1)

    def _apply_profile(self) -> None:
        os.eventfd_read(self._switch_fd)
        with self.session.between_requests():  # type: ignore[union-attr]
            self._apply_switches()

    def _apply_switches(self) -> None:
        while not self._switches.empty():
            profile = self._switches.get()
            self.m.set_profile(profile)
            was, self.ttl = self.ttl, KERNEL_TTL if kernel_may_cache(profile) else 0.0
            if was and not self.ttl:  # what the kernel kept, the model must now decide
                self.forget_kernel_caches()
            log.warning("profile now %s", profile.name)

    def _invalidator(self) -> None:
        kind, ino, name, *then = self._stale.get()
        try:
            if self.session is None:
                return
            if kind == "entry":
                self.session.inval_entry(ino, name)
            else:
                self.session.inval_inode(ino, data=kind == "data")
        finally:
            for fn in then:
                fn()

    def forget_kernel_caches(self) -> None:
        """Make the kernel ask again about what it cached. A directory's name
        is kept: the kernel drops an invalidated entry even while a process
        works in that directory, whose getcwd() then fails with ENOENT for
        good (a job on the node, when an instructor sets a fault). Its
        attributes and listing are still invalidated below, and the names in
        it are asked about again."""
        inodes, names = self.nodes.snapshot()
        for parent, name in names:
            if self.nodes.is_dir_entry(parent, name):
                continue
            self._stale.put(("entry", parent, name))
        for ino in inodes:
            self._stale.put(("data", ino, b""))

    def on_inotify(self) -> None:
        self.creds.root()  # the client's own reading, not a caller's
        for wd, mask, name in self.inotify.events():
            self.changed_on_server(wd, mask, name)

    def changed_on_server(self, wd: int, mask: int, name: bytes) -> None:
        """inotify saw the backing store change (by any node, this one too)."""
        if not self.ttl:
            return  # the kernel caches nothing for 0 s: nothing to invalidate
        if mask & Inotify.OVERFLOW:
            self.forget_kernel_caches()
            return
        # What this node made itself, the kernel already knows: only a state
        # it was not told about (another node's doing) is invalidated.
        with self._coherence:
            self._changed(wd, mask, name)

    def _changed(self, wd: int, mask: int, name: bytes) -> None:
        for parent in self.nodes.dirs_of(wd):
            try:
                pnode = self.nodes.get(parent)
                pfd = pnode.fd
            except OSError:
                continue
            if not pnode.is_dir:  # a file with several names, watched itself
                if parent not in self._writing and _fingerprint_at(pfd, b"") != self.nodes.seen(parent):
                    self._stale.put(("data", parent, b""))
                continue
            child = self.nodes.child(parent, name) if name else None
            if child is not None and child in self._writing:
                continue  # this node's own write, recorded when it is done
            if child is not None:
                now = _fingerprint_at(pfd, name)
                seen = self.nodes.seen(child)
                if now == seen:
                    continue  # this node's own change: the directory's too
                if now is None or seen is None or now[0] != seen[0]:
                    self._stale.put(("entry", parent, name))  # gone, or another file by that name
                else:
                    self._stale.put(("data", child, b""))
            elif name and mask & BY_INODE:
                self._changed_by_inode(pfd, name)
            if (not name or mask & Inotify.NAMESPACE) and _fingerprint_at(pfd, b"") != self.nodes.seen(parent):
                self._stale.put(("attr", parent, b""))

    def _changed_by_inode(self, pfd: int, name: bytes) -> None:
        """A name this node never looked up changed: if it names an inode the
        kernel holds by another name (a hard link), that inode is stale."""
        try:
            s = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except OSError:
            return
        nid = self.nodes.by_inode(s)
        if nid is not None and fingerprint(s) != self.nodes.seen(nid):
            self._stale.put(("data", nid, b""))


class _RootWatch:
    """Adds inotify watches as root: the client's own doing, whoever asked."""

    def __init__(self, inotify: Inotify, creds: Credentials) -> None:
        self.inotify, self.creds = inotify, creds

    def add(self, fd: int) -> int:
        with self.creds.as_root():
            return self.inotify.add(fd)

    def remove(self, wd: int) -> None:
        self.inotify.remove(wd)


class Handles:
    """Open files and directories, by owner: one user may hold at most `cap`,
    and all users but root together at most `total` (0: no bound), so that
    no user can take the daemon's descriptors from everyone else."""

    def __init__(self, cap: int, total: int = 0) -> None:
        self.cap, self.total = cap, total
        self._owner: dict[int, int] = {}
        self._per_uid: Counter[int] = Counter()
        self._users = 0  # held by users other than root
        self._lock = threading.Lock()

    def check(self, uid: int) -> None:
        if uid and self._per_uid[uid] >= self.cap:
            raise OSError(errno.EMFILE, f"uid {uid} holds {self.cap} open files on this mount")
        if uid and self.total and self._users >= self.total:
            raise OSError(errno.ENFILE, f"users hold {self.total} open files on this mount")

    def take(self, uid: int, fh: int) -> None:
        with self._lock:
            self.check(uid)
            self._owner[fh] = uid
            self._per_uid[uid] += 1
            self._users += bool(uid)

    def give_back(self, fh: int) -> None:
        with self._lock:
            uid = self._owner.pop(fh, None)
            if uid is not None:
                self._per_uid[uid] -= 1
                self._users -= bool(uid)
                if not self._per_uid[uid]:
                    del self._per_uid[uid]

    def close(self, fd: int) -> None:
        self.give_back(fd)
        os.close(fd)

    def count(self) -> int:
        return len(self._owner)


def _handle_of(fd: int, s: os.stat_result, dirfd: int, name: bytes) -> int:
    """A handle on the inode open as `fd` (stat `s`), just created as `name`
    in `dirfd`. By name first, which is cheap; if another node swapped the
    name meanwhile, through the magic link to the open file itself (following
    it: with O_NOFOLLOW that would be a handle on the /proc link)."""
    try:
        handle = open_handle(dirfd, name)
    except OSError:
        handle = -1
    else:
        h = os.stat(handle)
        if (h.st_dev, h.st_ino) == (s.st_dev, s.st_ino):
            return handle
        os.close(handle)
    return os.open(proc(fd), os.O_PATH | os.O_CLOEXEC)


def _live(fd: int, fh: int | None = None) -> Attrs:
    """The attributes of a handle's inode; gone (FileNotFoundError) once no
    name is left, unless asked through an open file `fh`."""
    s = os.stat(fd if fh is None else fh)
    if s.st_nlink == 0 and fh is None:
        raise FileNotFoundError(errno.ENOENT, "removed", None)
    return Attrs.from_stat(s)


def _child_attrs(dirfd: int, name: str | bytes) -> Attrs:
    return Attrs.from_stat(os.stat(name, dir_fd=dirfd, follow_symlinks=False))


def _fingerprint_at(dirfd: int, name: bytes) -> Fingerprint | None:
    try:
        return fingerprint(os.stat(name, dir_fd=dirfd, follow_symlinks=False) if name else os.stat(dirfd))
    except OSError:
        return None


def _thread(step, name: str) -> None:
    """A daemon thread running `step()` forever; a step's exception is logged
    and the next step runs (ll.survive)."""
    def run() -> None:
        while True:
            ll.survive(step, name)
    threading.Thread(target=run, daemon=True, name=name).start()


RENAME_NOREPLACE = 1
# inotify events on a name that may be another name of a known inode.
BY_INODE = Inotify.CONTENT | Inotify.ATTRIB | Inotify.NAMESPACE
# Requests that reach the server only through a handle or an open file, where
# no permission is checked: they run with whatever identity the thread has.
# Every other request takes its caller's first.
NO_CHECKS = frozenset({"forget", "getattr", "read", "readdir", "release", "releasedir", "fsync", "statfs",
                       "readlink", "flush"})
# Open flags the kernel leaves in that mean nothing for a handle's reopening
# (O_NOFOLLOW would refuse the /proc magic link itself).
OPEN_DROP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_NOFOLLOW


def set_times(to_set: int, s: ll.Stat) -> tuple[tuple[int | None, int | None], tuple[bool, bool]]:
    """((atime, mtime) in ns or None to leave alone, (atime now, mtime now))
    from setattr's bits: a time may be set, set to now (`touch`, and Snakemake
    touching outputs) or left alone (touch -m)."""
    times: list[int | None] = []
    now: list[bool] = []
    for flag, now_flag, ts in ((ll.SET_ATIME, ll.SET_ATIME_NOW, s.st_atim),
                               (ll.SET_MTIME, ll.SET_MTIME_NOW, s.st_mtim)):
        now.append(bool(to_set & now_flag))
        times.append(ts.tv_sec * 1_000_000_000 + ts.tv_nsec if to_set & flag and not to_set & now_flag else None)
    return (times[0], times[1]), (now[0], now[1])


class ProfileWatcher:
    """Re-reads the active profile when its file changes; writes the stats file."""

    def __init__(self, fs: SharedFS, control: Path, stats: Path | None, interval: float = 1.0) -> None:
        self.fs, self.control, self.stats, self.interval = fs, control, stats, interval
        self.stamp = self._stamp()

    def start(self) -> None:
        _thread(self._tick, "profile watcher")  # e.g. EMFILE in one tick: the next tries again

    def _stamp(self) -> tuple[int, int] | None:
        try:
            s = os.stat(self.control)
            return s.st_mtime_ns, s.st_ino
        except FileNotFoundError:
            return None

    def _tick(self) -> None:
        time.sleep(self.interval)
        self.step()

    def step(self) -> None:
        stamp = self._stamp()
        if stamp != self.stamp:
            self.stamp = stamp
            try:
                profile = read_active(self.control)
            except ProfileError as e:
                log.error("keeping profile %s: %s", self.fs.m.profile.name, e)
            else:
                self.fs.switch_profile(profile)
        if self.stats is not None:
            # Root's only: which paths fail and how often is nobody else's business.
            tmp = self.stats.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                os.fchmod(fd, 0o600)
                f.write(json.dumps(self.fs.snapshot()) + "\n")
            tmp.replace(self.stats)


@dataclass(frozen=True)
class Budget:
    """How the daemon's descriptors are shared: `per_user` open files for one
    user, `users` for all users but root together, `nodes` kept open for the
    inodes the kernel holds (the rest are reopened by handle); what is left
    is root's and the client's own."""
    per_user: int
    users: int
    nodes: int


def handle_budget() -> Budget:
    """Raise this process's descriptor limit to its ceiling and share it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nodes = max(64, min(4096, hard // 8))
    return Budget(per_user=max(64, hard // 4), users=max(64, hard - nodes - max(256, hard // 10)), nodes=nodes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nfs.client", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backing", required=True, help="the server's tree (root-only)")
    ap.add_argument("--mountpoint", required=True)
    ap.add_argument("--control", required=True, help="active-profile file (JSON)")
    ap.add_argument("--node", default=os.uname().nodename)
    ap.add_argument("--stats", help="write operation counters here every second (root-only)")
    ap.add_argument("--max-open-per-user", type=int, default=0,
                    help="open files one user may hold on this mount (default: a quarter of the fd limit)")
    ap.add_argument("--workers", type=int, default=WORKERS,
                    help=f"threads serving requests, fairly across users (default {WORKERS}; 0: the reading thread)")
    ap.add_argument("--debug", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.WARNING,
                        format=f"minihpc-nfs[{a.node}] %(levelname)s %(message)s")
    for path, what in ((a.backing, "backing store"), (a.mountpoint, "mountpoint")):
        if not os.path.isdir(path):
            print(f"nfs.client: {what} {path} is not a directory; create it first", file=sys.stderr)
            return 2
    try:
        profile = read_active(Path(a.control))
    except ProfileError as e:
        print(f"nfs.client: {e}", file=sys.stderr)
        return 2
    budget = handle_budget()
    # Not O_PATH: open_by_handle_at needs a real descriptor on the filesystem.
    mount_fd = os.open(a.backing, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    # Only the caller's umask applies (the kernel applies it before asking):
    # the daemon's own would mask every new file again.
    os.umask(0)
    root_fd = os.open(a.backing, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    store = BeneathStore(root_fd)
    inotify = Inotify()
    model = NodeModel(a.node, profile, store)
    fs = SharedFS(root_fd, model, inotify, a.max_open_per_user or budget.per_user,
                  mount_fd=mount_fd, max_nodes_open=budget.nodes, max_handles_total=budget.users)
    options = ["allow_other", "default_permissions", "fsname=minihpc-nfs", "subtype=minihpc"]
    fs.session = ll.Session(fs.handlers(), a.mountpoint, options + (["debug"] if a.debug else []),
                            workers=a.workers, quick={ll.FUSE_FLUSH: fs.quick_flush,
                                                           # no ioctl is served (isatty asks at every open)
                                                           ll.FUSE_IOCTL: lambda head: errno.ENOTTY})
    if a.workers:
        sys.setswitchinterval(SWITCH_S)
    # A serving thread runs as its caller: the claim of a cluster-wide fault is the client's own (root's).
    claim = claim_in(claims_dir(Path(a.control)))

    def claim_as_root(name: str) -> bool:
        with fs.creds.as_root():
            return claim(name)
    model.claim = claim_as_root
    model.set_profile(profile)  # its fault rules again, now with claims
    # The model's latency delays the reply, not the loop: other callers go on.
    fs.m.sleep = fs.session.replies.charge
    ProfileWatcher(fs, Path(a.control), Path(a.stats) if a.stats else None).start()
    log.warning("mounting %s on %s, profile %s", a.backing, a.mountpoint, profile.name)
    return 1 if fs.serve() else 0


if __name__ == "__main__":
    sys.exit(main())
