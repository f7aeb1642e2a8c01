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

Files are created as the calling user (the daemon runs as root): with
allow_other and default_permissions the kernel checks permissions against the
owners the backing store records.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path

from nfs import fuse_ll as ll
from nfs.model import Attrs, BackingStore, NodeModel
from nfs.nodes import Fingerprint, NodeTable, fingerprint
from nfs.notify import Inotify
from nfs.profiles import Profile, ProfileError, read_active

log = logging.getLogger("minihpc-nfs")

# How long the kernel may trust what a pass-through profile told it; inotify
# invalidates anything another node changes long before this.
KERNEL_TTL = 300.0
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC


def _stat(a: Attrs) -> ll.Stat:
    return ll.fill_stat(ll.Stat(), ino=a.ino, mode=a.mode, nlink=a.nlink, uid=a.uid, gid=a.gid, size=a.size,
                        blocks=a.blocks, atime_ns=a.atime_ns, mtime_ns=a.mtime_ns, ctime_ns=a.ctime_ns)


def kernel_may_cache(p: Profile) -> bool:
    """Pass-through: nothing for the model to decide, so the kernel may cache."""
    return (p.noac and p.lookupcache == "none" and p.delay == 0 and not p.faults
            and p.rtt_ms == p.jitter_ms == p.meta_ms == p.bandwidth_mbs == 0)


class SharedFS:
    def __init__(self, store: BackingStore, model: NodeModel, inotify: Inotify) -> None:
        self.store, self.m, self.inotify = store, model, inotify
        self.nodes = NodeTable(store.real, inotify)
        self.session: ll.Session | None = None
        # Invalidations go to the kernel from a thread of their own: one sent
        # from the request loop could wait for a lock held by a caller whose
        # request that loop has yet to answer.
        self._stale: queue.SimpleQueue = queue.SimpleQueue()
        self._switches: queue.SimpleQueue = queue.SimpleQueue()
        self._switch_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.ttl = KERNEL_TTL if kernel_may_cache(model.profile) else 0.0
        self._dirs: dict[int, list] = {}
        self._next_dir = 1

    # -- replies -------------------------------------------------------------

    def _entry(self, req, parent: int, name: bytes, path: str, a: Attrs, ino: int | None = None,
               fi=None) -> None:
        ino = self.nodes.remember(parent, name, fingerprint(a), a.is_dir, path, ino)
        e = ll.EntryParam(ino=ino, generation=0, attr=_stat(a), attr_timeout=self.ttl, entry_timeout=self.ttl)
        # The caller may be gone by the reply (interrupted): then the kernel
        # holds no reference to forget, and nobody will release the file.
        if fi is None:
            self._reply(ll.reply_entry, req, ctypes.byref(e), on_fail=lambda: self.nodes.forget(ino, 1))
        else:
            def gone() -> None:
                self.nodes.forget(ino, 1)
                os.close(fi.contents.fh)
            self._reply(ll.reply_create, req, ctypes.byref(e), fi, on_fail=gone)

    def _reply(self, fn, *args, on_fail=None) -> None:
        self.session.replies.send(fn, *args, on_fail=on_fail)  # type: ignore[union-attr]

    @staticmethod
    def _opened(fh: int, bits: int = 0):
        """The open reply's file info: our own copy, since the library's is
        gone once the handler returns and the reply may wait for latency."""
        fi = ll.FileInfo(fh=fh, bits=bits)
        return ctypes.pointer(fi)

    def _as_caller(self, req, real: str) -> None:
        ctx = ll.req_ctx(req).contents
        if (ctx.uid, ctx.gid) != (os.geteuid(), os.getegid()):
            os.lchown(real, ctx.uid, ctx.gid)

    def _made(self, parent: int) -> None:
        """After this node removed a name from `parent`: remember the directory's
        new state, so that inotify's report of it invalidates nothing. (A name
        this node created needs nothing: the report names a child the kernel
        was just told about.)"""
        if self.ttl:
            self.nodes.saw(parent, fingerprint(os.lstat(self.store.real(self.nodes.path(parent)))))

    def _ok(self, req) -> None:
        self._reply(ll.reply_err, req, 0)

    # -- lookups and attributes ----------------------------------------------

    def lookup(self, req, parent: int, name: bytes) -> None:
        path = self.nodes.child_path(parent, name)
        self.m.fault("getattr", path)
        self._entry(req, parent, name, path, self.m.stat(path))

    def forget(self, ino: int, nlookup: int) -> None:
        self.nodes.forget(ino, nlookup)

    def getattr(self, req, ino: int, fi) -> None:
        path = self.nodes.path(ino)
        self.m.fault("getattr", path)
        if fi:
            try:
                a = self.m.stat(path, handle=True)
            except FileNotFoundError:  # open but unlinked: the handle still answers
                a = Attrs.from_stat(os.fstat(fi.contents.fh))
        else:
            a = self.m.stat(path)
        self.nodes.saw(ino, fingerprint(a))
        self._reply(ll.reply_attr, req, ctypes.byref(_stat(a)), self.ttl)

    def setattr(self, req, ino: int, attr, to_set: int, fi) -> None:
        path = self.nodes.path(ino)
        real = self.store.real(path)
        self.m.fault("setattr", path)
        self.m.rpc("setattr")
        s = attr.contents
        if to_set & ll.SET_MODE:
            os.chmod(real, s.st_mode & 0o7777)
        if to_set & (ll.SET_UID | ll.SET_GID):
            os.lchown(real, s.st_uid if to_set & ll.SET_UID else -1, s.st_gid if to_set & ll.SET_GID else -1)
        if to_set & ll.SET_SIZE:
            os.truncate(fi.contents.fh if fi else real, s.st_size)
        if to_set & (ll.SET_ATIME | ll.SET_MTIME | ll.SET_ATIME_NOW | ll.SET_MTIME_NOW):
            os.utime(real, ns=set_times(to_set, s, os.lstat(real), time.time_ns()), follow_symlinks=False)
        self.m.own_change(path, parent=False)
        a = self.store.stat(path)
        self.nodes.saw(ino, fingerprint(a))
        self._reply(ll.reply_attr, req, ctypes.byref(_stat(a)), self.ttl)

    def readlink(self, req, ino: int) -> None:
        path = self.nodes.path(ino)
        self.m.fault("readlink", path)
        self.m.rpc("readlink")
        self._reply(ll.reply_readlink, req, os.fsencode(os.readlink(self.store.real(path))))

    def statfs(self, req, ino: int) -> None:
        self.m.fault("statfs", "/")
        s = os.statvfs(self.store.real("/"))
        out = ll.StatVFS(f_bsize=s.f_bsize, f_frsize=s.f_frsize, f_blocks=s.f_blocks, f_bfree=s.f_bfree,
                         f_bavail=s.f_bavail, f_files=s.f_files, f_ffree=s.f_ffree, f_favail=s.f_favail,
                         f_flag=s.f_flag, f_namemax=s.f_namemax)
        self._reply(ll.reply_statfs, req, ctypes.byref(out))

    # -- directories -----------------------------------------------------------

    def opendir(self, req, ino: int, fi) -> None:
        path = self.nodes.path(ino)
        self.m.fault("readdir", path)
        entries = [(b".", 0, 0o040000), (b"..", 0, 0o040000),
                   *((os.fsencode(n), i, kind) for n, i, kind in self.m.listdir(path))]
        handle, self._next_dir = self._next_dir, self._next_dir + 1
        self._dirs[handle] = entries
        self._reply(ll.reply_open, req, self._opened(handle), on_fail=lambda: self._dirs.pop(handle, None))

    def readdir(self, req, ino: int, size: int, off: int, fi) -> None:
        entries = self._dirs[fi.contents.fh]
        buf = ctypes.create_string_buffer(size)
        base, used = ctypes.addressof(buf), 0
        s = ll.Stat()
        for i in range(off, len(entries)):
            name, s.st_ino, s.st_mode = entries[i]
            n = ll.add_direntry(req, base + used, size - used, name, ctypes.byref(s), i + 1)
            if n > size - used:
                break
            used += n
        self._reply(ll.reply_buf, req, buf, used)

    def releasedir(self, req, ino: int, fi) -> None:
        self._dirs.pop(fi.contents.fh, None)
        self._ok(req)

    def mkdir(self, req, parent: int, name: bytes, mode: int) -> None:
        path = self.nodes.child_path(parent, name)
        real = self.store.real(path)
        self.m.fault("mkdir", path)
        self.m.rpc("mkdir")
        os.mkdir(real, mode)
        self._as_caller(req, real)
        self.m.own_change(path)
        self._entry(req, parent, name, path, self.store.stat(path))

    def rmdir(self, req, parent: int, name: bytes) -> None:
        path = self.nodes.child_path(parent, name)
        self.m.fault("rmdir", path)
        self.m.rpc("rmdir")
        os.rmdir(self.store.real(path))
        self.m.own_change(path)
        self.nodes.unlinked(parent, name)
        self._made(parent)
        self._ok(req)

    # -- names -------------------------------------------------------------------

    def unlink(self, req, parent: int, name: bytes) -> None:
        path = self.nodes.child_path(parent, name)
        self.m.fault("unlink", path)
        self.m.rpc("remove")
        os.unlink(self.store.real(path))
        self.m.own_change(path)
        self.nodes.unlinked(parent, name)
        self._made(parent)
        self._ok(req)

    def rename(self, req, parent: int, name: bytes, newparent: int, newname: bytes, flags: int) -> None:
        old, new = self.nodes.child_path(parent, name), self.nodes.child_path(newparent, newname)
        self.m.fault("rename", old)
        if flags & ~RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, "rename flags other than RENAME_NOREPLACE")
        if flags and os.path.lexists(self.store.real(new)):
            raise OSError(errno.EEXIST, "exists", new)
        self.m.rpc("rename")
        os.rename(self.store.real(old), self.store.real(new))
        self.m.own_change(old, new)
        self.nodes.moved(parent, name, newparent, newname, new)
        self._made(parent)
        self._made(newparent)
        self._ok(req)

    def symlink(self, req, target: bytes, parent: int, name: bytes) -> None:
        path = self.nodes.child_path(parent, name)
        real = self.store.real(path)
        self.m.fault("symlink", path)
        self.m.rpc("symlink")
        os.symlink(target, real)
        self._as_caller(req, real)
        self.m.own_change(path)
        self._entry(req, parent, name, path, self.store.stat(path))

    def link(self, req, ino: int, newparent: int, newname: bytes) -> None:
        source, path = self.nodes.path(ino), self.nodes.child_path(newparent, newname)
        self.m.fault("link", path)
        self.m.rpc("link")
        os.link(self.store.real(source), self.store.real(path))
        self.m.own_change(path, source)
        self._entry(req, newparent, newname, path, self.store.stat(path), ino=ino)

    # -- files -------------------------------------------------------------------

    def create(self, req, parent: int, name: bytes, mode: int, fi) -> None:
        path = self.nodes.child_path(parent, name)
        real = self.store.real(path)
        self.m.fault("create", path)
        self.m.rpc("create")
        fd = os.open(real, fi.contents.flags | os.O_CREAT, mode)
        self._as_caller(req, real)
        self.m.own_change(path)
        self._entry(req, parent, name, path, Attrs.from_stat(os.fstat(fd)), fi=self._opened(fd))

    def open(self, req, ino: int, fi) -> None:
        path = self.nodes.path(ino)
        self.m.fault("open", path)
        flags = fi.contents.flags
        try:
            self.m.revalidate(path)  # close-to-open
            fd = os.open(self.store.real(path), flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY))
        except FileNotFoundError:
            # The kernel still had the name (another node removed it a moment
            # ago): ESTALE makes it look the name up again and retry the open,
            # so that an O_CREAT open creates the file anew, as over NFS.
            raise OSError(errno.ESTALE, "stale file handle", path) from None
        if flags & WRITE_FLAGS:
            self.m.own_change(path, parent=False)
        # Pass-through: pages may outlive the file's close (inotify drops those
        # another node changed).
        self._reply(ll.reply_open, req, self._opened(fd, ll.KEEP_CACHE if self.ttl else 0),
                    on_fail=lambda: os.close(fd))

    def read(self, req, ino: int, size: int, off: int, fi) -> None:
        self.m.fault("read", self.nodes.path(ino))
        self.m.rpc("read", size)
        data = os.pread(fi.contents.fh, size, off)
        self._reply(ll.reply_buf, req, data, len(data))

    def write(self, req, ino: int, buf: int, size: int, off: int, fi) -> None:
        path = self.nodes.path(ino)
        self.m.fault("write", path)
        self.m.rpc("write", size)
        n = os.pwrite(fi.contents.fh, ctypes.string_at(buf, size), off)
        self.m.own_change(path, parent=False)
        if self.ttl:
            self.nodes.saw(ino, fingerprint(os.fstat(fi.contents.fh)))
        self._reply(ll.reply_write, req, n)

    def fsync(self, req, ino: int, datasync: int, fi) -> None:
        self.m.fault("fsync", self.nodes.path(ino))
        self.m.rpc("commit")
        os.fsync(fi.contents.fh)
        self._ok(req)

    def release(self, req, ino: int, fi) -> None:
        os.close(fi.contents.fh)
        self._ok(req)

    # -- coherence -----------------------------------------------------------------

    def handlers(self) -> dict:
        return {name: getattr(self, name) for name in ll.PROTOTYPES}

    def serve(self) -> int:
        threading.Thread(target=self._invalidator, daemon=True, name="invalidator").start()
        return self.session.run({self.inotify.fd: self.on_inotify,  # type: ignore[union-attr]
                                 self._switch_fd: self._apply_profile})

    def switch_profile(self, profile: Profile) -> None:
        """From any thread: the request loop applies it between two requests,
        so no reply is cut with the old profile's kernel timeouts after it."""
        self._switches.put(profile)
        os.eventfd_write(self._switch_fd, 1)

    def _apply_profile(self) -> None:
        os.eventfd_read(self._switch_fd)
        while not self._switches.empty():
            profile = self._switches.get()
            self.m.set_profile(profile)
            was, self.ttl = self.ttl, KERNEL_TTL if kernel_may_cache(profile) else 0.0
            if was and not self.ttl:  # what the kernel kept, the model must now decide
                self.forget_kernel_caches()
            log.warning("profile now %s", profile.name)

    def _invalidator(self) -> None:
        while True:
            kind, ino, name = self._stale.get()
            if self.session is None:
                continue
            if kind == "entry":
                self.session.inval_entry(ino, name)
            else:
                self.session.inval_inode(ino, data=kind == "data")

    def forget_kernel_caches(self) -> None:
        inodes, names = self.nodes.snapshot()
        for parent, name in names:
            self._stale.put(("entry", parent, name))
        for ino in inodes:
            self._stale.put(("data", ino, b""))

    def on_inotify(self) -> None:
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
        for parent in self.nodes.dirs_of(wd):
            try:
                dir_path = self.nodes.path(parent)
            except OSError:
                continue
            child = self.nodes.child(parent, name) if name else None
            if child is not None:
                now = self._now(self.nodes.child_path(parent, name))
                seen = self.nodes.seen(child)
                if now == seen:
                    continue  # this node's own change: the directory's too
                if now is None or seen is None or now[0] != seen[0]:
                    self._stale.put(("entry", parent, name))  # gone, or another file by that name
                else:
                    self._stale.put(("data", child, b""))
            if (not name or mask & Inotify.NAMESPACE) and self._now(dir_path) != self.nodes.seen(parent):
                self._stale.put(("attr", parent, b""))

    def _now(self, path: str) -> Fingerprint | None:
        try:
            return fingerprint(os.lstat(self.store.real(path)))
        except OSError:
            return None


RENAME_NOREPLACE = 1


def set_times(to_set: int, s: ll.Stat, current: os.stat_result, now_ns: int) -> tuple[int, int]:
    """(atime, mtime) in ns for utime, from setattr's bits: a time may be set,
    set to now (`touch`, and Snakemake touching outputs) or left alone (touch -m)."""
    out = []
    for flag, now_flag, ts, cur in ((ll.SET_ATIME, ll.SET_ATIME_NOW, s.st_atim, current.st_atime_ns),
                                    (ll.SET_MTIME, ll.SET_MTIME_NOW, s.st_mtim, current.st_mtime_ns)):
        out.append(now_ns if to_set & now_flag else ts.tv_sec * 1_000_000_000 + ts.tv_nsec if to_set & flag
                   else cur)
    return out[0], out[1]


class ProfileWatcher(threading.Thread):
    """Re-reads the active profile when its file changes; writes the stats file."""

    def __init__(self, fs: SharedFS, control: Path, stats: Path | None, interval: float = 1.0) -> None:
        super().__init__(daemon=True, name="profile-watcher")
        self.fs, self.control, self.stats, self.interval = fs, control, stats, interval
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            s = os.stat(self.control)
            return s.st_mtime_ns, s.st_ino
        except FileNotFoundError:
            return None

    def run(self) -> None:
        model = self.fs.m
        while True:
            time.sleep(self.interval)
            stamp = self._stamp()
            if stamp != self.stamp:
                self.stamp = stamp
                try:
                    profile = read_active(self.control)
                except ProfileError as e:
                    log.error("keeping profile %s: %s", model.profile.name, e)
                else:
                    self.fs.switch_profile(profile)
            if self.stats is not None:
                tmp = self.stats.with_suffix(".tmp")
                tmp.write_text(json.dumps(model.snapshot()) + "\n")
                tmp.replace(self.stats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nfs.client", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backing", required=True, help="the server's tree (root-only)")
    ap.add_argument("--mountpoint", required=True)
    ap.add_argument("--control", required=True, help="active-profile file (JSON)")
    ap.add_argument("--node", default=os.uname().nodename)
    ap.add_argument("--stats", help="write operation counters here every second")
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
    store = BackingStore(a.backing)
    inotify = Inotify()
    fs = SharedFS(store, NodeModel(a.node, profile, store), inotify)
    options = ["allow_other", "default_permissions", "fsname=minihpc-nfs", "subtype=minihpc"]
    fs.session = ll.Session(fs.handlers(), a.mountpoint, options + (["debug"] if a.debug else []))
    # The model's latency delays the reply, not the loop: other callers go on.
    fs.m.sleep = fs.session.replies.charge
    ProfileWatcher(fs, Path(a.control), Path(a.stats) if a.stats else None).start()
    log.warning("mounting %s on %s, profile %s", a.backing, a.mountpoint, profile.name)
    return 1 if fs.serve() else 0


if __name__ == "__main__":
    sys.exit(main())
