"""The NFS-style client: a FUSE filesystem over the backing store, run on every
node, applying the behaviour model (nfs.model) of the active profile.

    python -m nfs.client --backing /srv/nfs/export --mountpoint /shared \
        --control /srv/nfs/control/profile.json --node c1

Kernel-side caching is switched off (entry, attribute and negative timeouts 0)
so that every lookup reaches the model, which alone decides what is cached.
Files are created as the calling user (the daemon runs as root): with
allow_other and default_permissions the kernel checks permissions against the
owners the backing store records.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # mfusepy picks the library at import
import mfusepy  # noqa: E402

from nfs.model import Attrs, BackingStore, NodeModel  # noqa: E402
from nfs.profiles import ProfileError, read_active  # noqa: E402

log = logging.getLogger("minihpc-nfs")


# libfuse3 hands utimens the timespec special values of utimensat(2) with
# tv_sec 0: "now" for `touch` (and Snakemake touching its outputs), "omit" for
# the time not being set (touch -m leaves atime alone).
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def resolve_times(times: tuple[int, int], current: tuple[int, int], now_ns: int) -> tuple[int, int]:
    """(atime, mtime) in ns to set, given what utimens received and what the file has."""
    return tuple(now_ns if t == UTIME_NOW else cur if t == UTIME_OMIT else t
                 for t, cur in zip(times, current, strict=True))  # type: ignore[return-value]


def _fuse_attrs(a: Attrs) -> dict[str, int]:
    return {"st_mode": a.mode, "st_ino": a.ino, "st_nlink": a.nlink, "st_uid": a.uid, "st_gid": a.gid,
            "st_size": a.size, "st_atime": a.atime_ns, "st_mtime": a.mtime_ns, "st_ctime": a.ctime_ns,
            "st_blocks": a.blocks, "st_blksize": 4096}


class SharedFS(mfusepy.Operations):
    use_ns = True

    def __init__(self, store: BackingStore, model: NodeModel) -> None:
        self.store, self.m = store, model

    def _real(self, path: str) -> str:
        return self.store.real(path)

    def _as_caller(self, real: str) -> None:
        uid, gid, _ = mfusepy.fuse_get_context()
        os.lchown(real, uid, gid)

    # -- setup ---------------------------------------------------------------

    def init_with_config(self, conn_info, config) -> None:
        if config is not None:
            config.entry_timeout = config.attr_timeout = config.negative_timeout = 0.0
            config.use_ino = 1

    # -- reading ---------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        self.m.fault("getattr", path)
        if fh is not None:
            try:
                return _fuse_attrs(self.m.stat(path, handle=True))
            except FileNotFoundError:  # open but unlinked: the handle still answers
                return _fuse_attrs(Attrs.from_stat(os.fstat(fh)))
        return _fuse_attrs(self.m.stat(path))

    def readdir(self, path: str, fh: int) -> list:
        self.m.fault("readdir", path)
        return [".", "..", *((name, {"st_ino": ino, "st_mode": kind}, 0) for name, ino, kind in self.m.listdir(path))]

    def readlink(self, path: str) -> str:
        self.m.fault("readlink", path)
        self.m.rpc("readlink")
        return os.readlink(self._real(path))

    def open(self, path: str, flags: int) -> int:
        self.m.fault("open", path)
        self.m.revalidate(path)  # close-to-open
        fd = os.open(self._real(path), flags)
        if flags & (os.O_TRUNC | os.O_WRONLY | os.O_RDWR):
            self.m.own_change(path, parent=False)
        return fd

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self.m.fault("read", path)
        self.m.rpc("read", size)
        return os.pread(fh, size, offset)

    def statfs(self, path: str) -> dict[str, int]:
        self.m.fault("statfs", path)
        s = os.statvfs(self._real(path))
        return {k: getattr(s, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                                           "f_ffree", "f_favail", "f_flag", "f_namemax")}

    # -- writing ---------------------------------------------------------------

    def create(self, path: str, mode: int, flags: int) -> int:
        self.m.fault("create", path)
        self.m.rpc("create")
        real = self._real(path)
        fd = os.open(real, flags | os.O_CREAT, mode)
        self._as_caller(real)
        self.m.own_change(path)
        return fd

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self.m.fault("write", path)
        self.m.rpc("write", len(data))
        n = os.pwrite(fh, data, offset)
        self.m.own_change(path, parent=False)
        return n

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        self.m.fault("setattr", path)
        self.m.rpc("setattr")
        os.truncate(fh if fh is not None else self._real(path), length)
        self.m.own_change(path, parent=False)

    def chmod(self, path: str, mode: int) -> None:
        self.m.fault("setattr", path)
        self.m.rpc("setattr")
        os.chmod(self._real(path), mode)
        self.m.own_change(path, parent=False)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.m.fault("setattr", path)
        self.m.rpc("setattr")
        os.lchown(self._real(path), uid, gid)
        self.m.own_change(path, parent=False)

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        self.m.fault("setattr", path)
        self.m.rpc("setattr")
        real = self._real(path)
        if times:
            st = os.lstat(real)
            times = resolve_times(times, (st.st_atime_ns, st.st_mtime_ns), time.time_ns())
            os.utime(real, ns=times, follow_symlinks=False)
        else:
            os.utime(real, follow_symlinks=False)
        self.m.own_change(path, parent=False)

    def mkdir(self, path: str, mode: int) -> None:
        self.m.fault("mkdir", path)
        self.m.rpc("mkdir")
        os.mkdir(self._real(path), mode)
        self._as_caller(self._real(path))
        self.m.own_change(path)

    def unlink(self, path: str) -> None:
        self.m.fault("unlink", path)
        self.m.rpc("remove")
        os.unlink(self._real(path))
        self.m.own_change(path)

    def rmdir(self, path: str) -> None:
        self.m.fault("rmdir", path)
        self.m.rpc("rmdir")
        os.rmdir(self._real(path))
        self.m.own_change(path)

    def rename(self, old: str, new: str) -> None:
        self.m.fault("rename", old)
        self.m.rpc("rename")
        os.rename(self._real(old), self._real(new))
        self.m.own_change(old, new)

    def symlink(self, target: str, source: str) -> None:
        """Creates `target`, a symlink pointing at `source`."""
        self.m.fault("symlink", target)
        self.m.rpc("symlink")
        os.symlink(source, self._real(target))
        self._as_caller(self._real(target))
        self.m.own_change(target)

    def link(self, target: str, source: str) -> None:
        self.m.fault("link", target)
        self.m.rpc("link")
        os.link(self._real(source), self._real(target))
        self.m.own_change(target, source)

    def fsync(self, path: str, datasync: int, fh: int) -> None:
        self.m.fault("fsync", path)
        self.m.rpc("commit")
        os.fsync(fh)

    def flush(self, path: str, fh: int) -> None:
        return None

    def release(self, path: str, fh: int) -> None:
        os.close(fh)


class ProfileWatcher(threading.Thread):
    """Re-reads the active profile when its file changes; writes the stats file."""

    def __init__(self, model: NodeModel, control: Path, stats: Path | None, interval: float = 1.0) -> None:
        super().__init__(daemon=True, name="profile-watcher")
        self.model, self.control, self.stats, self.interval = model, control, stats, interval
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            s = os.stat(self.control)
            return s.st_mtime_ns, s.st_ino
        except FileNotFoundError:
            return None

    def run(self) -> None:
        while True:
            time.sleep(self.interval)
            stamp = self._stamp()
            if stamp != self.stamp:
                self.stamp = stamp
                try:
                    profile = read_active(self.control)
                except ProfileError as e:
                    log.error("keeping profile %s: %s", self.model.profile.name, e)
                else:
                    self.model.set_profile(profile)
                    log.warning("profile now %s", profile.name)
            if self.stats is not None:
                tmp = self.stats.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.model.snapshot()) + "\n")
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
    model = NodeModel(a.node, profile, store)
    ProfileWatcher(model, Path(a.control), Path(a.stats) if a.stats else None).start()
    log.warning("mounting %s on %s, profile %s", a.backing, a.mountpoint, profile.name)
    mfusepy.FUSE(SharedFS(store, model), a.mountpoint, foreground=True, allow_other=True,
                 default_permissions=True, fsname="minihpc-nfs", subtype="minihpc", debug=a.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
