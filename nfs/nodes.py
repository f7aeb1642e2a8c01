"""The node ids the kernel holds for one client, each with a handle on its inode.

In libfuse's low-level protocol the filesystem names every inode the kernel
knows. Here each node owns an O_PATH descriptor of its inode (a handle), taken
when the name was looked up without following it, and every operation on the
node goes through that handle, or through its parent's handle and a plain
name: never through a path string, which another node or a user's symlink
could redirect. One inode is one node, whatever names it has (hard links), as
in libfuse's passthrough_ll.

Directories are watched with inotify while known, and so are files with
several names (hard links), so that a change through any name invalidates the
one node of the inode.

Each node also keeps the name and path it was last reached by. Those are
labels only: keys of the model's caches and of fault rules, and what is
watched with inotify so that another node's changes can be invalidated.
"""

from __future__ import annotations

import errno
import os
import stat as st
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from nfs.model import Attrs
from nfs.syscalls import handle_of

ROOT_ID = 1
PATH_MAX = 4096


class Watcher(Protocol):
    def add(self, fd: int) -> int: ...

    def remove(self, wd: int) -> None: ...


# What identifies one state of a file on the server: inode, ctime, mtime, size.
Fingerprint = tuple[int, int, int, int]


def fingerprint(s: os.stat_result | Attrs) -> Fingerprint:
    if isinstance(s, Attrs):
        return s.ino, s.ctime_ns, s.mtime_ns, s.size
    return s.st_ino, s.st_ctime_ns, s.st_mtime_ns, s.st_size


def _linked(s: os.stat_result) -> bool:
    """A regular file with several names (hard links): watched itself."""
    return st.S_ISREG(s.st_mode) and s.st_nlink > 1


class Node:
    __slots__ = ("_fd", "handle", "table", "pins", "dead", "key", "mode", "parent", "name", "path", "nlookup",
                 "wd", "seen")

    def __init__(self, fd: int, s: os.stat_result, parent: int, name: bytes, path: str,
                 table: NodeTable | None = None, handle: bytes | None = None) -> None:
        self._fd, self.handle, self.table = fd, handle, table
        self.pins, self.dead = 0, False
        self.key, self.mode = (s.st_dev, s.st_ino), st.S_IFMT(s.st_mode)
        self.parent, self.name, self.path = parent, name, path
        self.nlookup, self.wd = 0, -1
        self.seen: Fingerprint | None = None  # the state the kernel was told, or this node made

    @property
    def fd(self) -> int:
        """The node's handle (an O_PATH descriptor), open until the request
        that asked for it ends (NodeTable.unpin)."""
        return self.table.pin(self) if self.table is not None else self._fd

    @property
    def ino(self) -> int:
        return self.key[1]

    @property
    def is_dir(self) -> bool:
        return self.mode == st.S_IFDIR

    @property
    def is_link(self) -> bool:
        return self.mode == st.S_IFLNK


class NodeTable:
    """Node ids the kernel holds, counted by lookups until it forgets them.
    Directories are watched while known. `root_fd` is the export's handle.

    The kernel may hold any number of inodes, but the table keeps at most
    `max_open` of their descriptors open (least recently used go first): the
    others are reopened from their filesystem handle by `reopen(handle)`
    (open_by_handle_at) when a request needs them, or, where that is refused
    (it takes CAP_DAC_READ_SEARCH, which a container does not get, and must
    not: with it a container's root can open any inode of the host's
    filesystem by handle), by name from the nearest ancestor still open, as
    `privileged()` (the client's own doing). A descriptor a request uses stays
    open until that request ends (`unpin`, per thread)."""

    def __init__(self, root_fd: int, watch: Watcher, reopen: Callable[[bytes], int] | None = None,
                 max_open: int = 0, privileged: Callable[[], AbstractContextManager] = nullcontext) -> None:
        self.watch = watch
        self.lock = threading.RLock()
        self.reopen, self.max_open = reopen, max_open if reopen is not None else 0
        self.privileged, self.by_handle = privileged, True
        self._open: OrderedDict[int, Node] = OrderedDict()  # evictable open descriptors, oldest first
        self._pinned = threading.local()
        root = Node(root_fd, os.stat(root_fd), 0, b"", "/")
        self.nodes: dict[int, Node] = {ROOT_ID: root}
        self.by_key: dict[tuple[int, int], int] = {root.key: ROOT_ID}
        self.names: dict[tuple[int, bytes], int] = {}
        self.watched: dict[int, set[int]] = {}  # inotify wd -> directory node ids
        self._next = ROOT_ID + 1
        self.reopened = 0
        self._watch(ROOT_ID)

    def get(self, ino: int) -> Node:
        node = self.nodes.get(ino)
        if node is None:
            raise OSError(errno.ESTALE, "node forgotten")
        return node

    def path(self, ino: int) -> str:
        return self.get(ino).path

    def fd(self, ino: int) -> int:
        return self.get(ino).fd

    def child_path(self, parent: int, name: bytes) -> str:
        """The label of parent/name: its path, or past PATH_MAX (where no path
        reaches anyway) one naming the parent's node id, so that a label
        never grows with depth."""
        base = self.path(parent)
        path = (base if base == "/" else base + "/") + os.fsdecode(name)
        return path if len(path) < PATH_MAX else f"//{parent}/{os.fsdecode(name)}"

    def known(self, parent: int, name: bytes, ino: int) -> int | None:
        """The node that parent/name was last seen naming, if it is inode `ino`."""
        with self.lock:
            nid = self.names.get((parent, name))
            node = self.nodes.get(nid) if nid is not None else None
            return nid if node is not None and node.ino == ino else None

    def remember(self, parent: int, name: bytes, path: str, seen: Fingerprint, fd: int | None = None,
                 nid: int | None = None, s: os.stat_result | None = None) -> int:
        """One more kernel reference to the inode reached as parent/name: either
        the handle `fd` (owned by the table from now on; closed at once if the
        inode already has a node), whose stat `s` the caller may already have,
        or the known node `nid`."""
        new_dir = False
        with self.lock:
            if fd is not None:
                if s is None:
                    try:
                        s = os.stat(fd)
                    except OSError:
                        os.close(fd)
                        raise
                nid = self.by_key.get((s.st_dev, s.st_ino))
                if nid is not None:
                    os.close(fd)
                else:
                    nid, self._next = self._next, self._next + 1
                    handle = handle_of(fd) if self.max_open else None
                    node = Node(fd, s, parent, name, path, self, handle)
                    self.nodes[nid], self.by_key[node.key] = node, nid
                    if handle is not None:
                        self._open[id(node)] = node
                        self._evict()
                    new_dir = node.is_dir or _linked(s)
            node = self.nodes[nid]  # type: ignore[index]
            node.parent, node.name, node.path = parent, name, path
            self.names[(parent, name)] = nid  # type: ignore[assignment]
            node.nlookup += 1
            node.seen = seen
        if new_dir:
            self._watch(nid)  # type: ignore[arg-type]
        return nid  # type: ignore[return-value]

    def linked(self, nid: int) -> None:
        """The node's inode has more than one name now: watch it itself, since
        another node may write it through a name in a directory not watched."""
        with self.lock:
            node = self.nodes.get(nid)
            if node is None or node.wd >= 0 or node.is_dir:
                return
        self._watch(nid)

    def by_inode(self, s: os.stat_result) -> int | None:
        """The node of the inode `s` describes, whatever name reached it."""
        with self.lock:
            return self.by_key.get((s.st_dev, s.st_ino))

    def _watch(self, nid: int) -> None:
        wd = self.watch.add(self.nodes[nid].fd)
        if wd >= 0:
            with self.lock:
                node = self.nodes.get(nid)
                if node is not None:
                    node.wd = wd
                    self.watched.setdefault(wd, set()).add(nid)

    def forget(self, nid: int, n: int) -> None:
        with self.lock:
            node = self.nodes.get(nid)
            if node is None or nid == ROOT_ID:
                return
            node.nlookup -= n
            if node.nlookup > 0:
                return
            del self.nodes[nid]
            del self.by_key[node.key]
            if self.names.get((node.parent, node.name)) == nid:
                del self.names[(node.parent, node.name)]
            dirs = self.watched.get(node.wd)
            if dirs is not None:
                dirs.discard(nid)
                if not dirs:
                    del self.watched[node.wd]
                    self.watch.remove(node.wd)
            node.dead = True
            if not node.pins:
                self._close(node)

    # -- bounded descriptors ---------------------------------------------------

    def pin(self, node: Node) -> int:
        """`node`'s descriptor, reopened if it was closed, held open until
        this thread's request ends."""
        if self.reopen is None:  # every descriptor stays open: nothing to pin
            return node._fd
        with self.lock:
            if node._fd < 0:
                if node.dead or node.handle is None or self.reopen is None:
                    raise OSError(errno.ESTALE, "node forgotten")
                fd = self._reopened(node)
                try:
                    s = os.stat(fd)
                except BaseException:
                    os.close(fd)
                    raise
                if (s.st_dev, s.st_ino) != node.key:  # never another inode than the node's
                    os.close(fd)
                    raise OSError(errno.ESTALE, "the handle names another inode now")
                node._fd = fd
                self.reopened += 1
            if node.handle is not None:
                self._open[id(node)] = node
                self._open.move_to_end(id(node))
            node.pins += 1
            pinned = self._pinned.__dict__.setdefault("nodes", [])
            pinned.append(node)
            self._evict()
            return node._fd

    def _reopened(self, node: Node) -> int:
        """A closed node's descriptor again (the lock held): by its handle, or by name once the
        handle is refused for want of the capability."""
        if self.by_handle:
            try:
                return self.reopen(node.handle)  # type: ignore[misc, arg-type]
            except PermissionError:
                self.by_handle = False  # no CAP_DAC_READ_SEARCH: by name from now on
        with self.privileged():
            return self._by_name(node)

    def _by_name(self, node: Node) -> int:
        """node's inode opened by its name in its parent, each ancestor whose descriptor was closed
        opened so in turn from the nearest one still open (the root always is): never a link
        followed, and every inode on the way checked to be the node's own, else ESTALE (renamed
        or replaced meanwhile, as an NFS handle goes stale). Iterative: depth costs no stack."""
        chain, n = [], node
        while n._fd < 0:
            parent = self.nodes.get(n.parent)
            if n.dead or parent is None or parent is n:
                raise OSError(errno.ESTALE, "node forgotten")
            chain.append(n)
            n = parent
        dirfd, ancestors = n._fd, []
        try:
            for m in reversed(chain):
                try:
                    fd = os.open(m.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
                except (FileNotFoundError, NotADirectoryError) as e:
                    raise OSError(errno.ESTALE, f"gone from where it was looked up ({e.strerror})") from None
                s = os.stat(fd)
                if (s.st_dev, s.st_ino) != m.key:
                    os.close(fd)
                    raise OSError(errno.ESTALE, "renamed or replaced since it was looked up")
                if m is node:
                    return fd
                ancestors.append(fd)
                dirfd = fd
        finally:
            for fd in ancestors:
                os.close(fd)
        raise OSError(errno.ESTALE, "node forgotten")  # (not reached: the chain ends with the node)

    def unpin(self) -> None:
        """This thread's request is over: its descriptors may close."""
        pinned = self._pinned.__dict__.get("nodes")
        if not pinned:
            return
        with self.lock:
            for node in pinned:
                node.pins -= 1
                if node.dead and not node.pins:
                    self._close(node)
            pinned.clear()
            self._evict()

    def open_count(self) -> int:
        with self.lock:
            return len(self._open)

    def _evict(self) -> None:
        while len(self._open) > self.max_open:
            for key, node in self._open.items():
                if not node.pins:
                    del self._open[key]
                    os.close(node._fd)
                    node._fd = -1
                    break
            else:
                return  # all in use: over the bound until their requests end

    def _close(self, node: Node) -> None:
        self._open.pop(id(node), None)
        if node._fd >= 0:
            os.close(node._fd)
            node._fd = -1

    def unlinked(self, parent: int, name: bytes) -> None:
        with self.lock:
            self.names.pop((parent, name), None)

    def moved(self, parent: int, name: bytes, newparent: int, newname: bytes, new_path: str) -> None:
        with self.lock:
            self.names.pop((newparent, newname), None)
            nid = self.names.pop((parent, name), None)
            if nid is None or nid not in self.nodes:
                return
            node = self.nodes[nid]
            old_path = node.path
            node.parent, node.name, node.path = newparent, newname, new_path
            self.names[(newparent, newname)] = nid
            if node.is_dir:  # the labels of everything known below it move too
                prefix = old_path + "/"
                for n in self.nodes.values():
                    if n.path.startswith(prefix):
                        n.path = new_path + n.path[len(old_path):]

    def saw(self, nid: int, fp: Fingerprint | None) -> None:
        with self.lock:
            node = self.nodes.get(nid)
            if node is not None:
                node.seen = fp

    def seen(self, nid: int) -> Fingerprint | None:
        with self.lock:
            node = self.nodes.get(nid)
            return node.seen if node is not None else None

    def child(self, parent: int, name: bytes) -> int | None:
        with self.lock:
            return self.names.get((parent, name))

    def dirs_of(self, wd: int) -> list[int]:
        with self.lock:
            return list(self.watched.get(wd, ()))

    def is_dir_entry(self, parent: int, name: bytes) -> bool:
        """Whether parent/name is a name the kernel holds for a directory."""
        with self.lock:
            nid = self.names.get((parent, name))
            node = self.nodes.get(nid) if nid is not None else None
            return node is not None and node.is_dir

    def snapshot(self) -> tuple[list[int], list[tuple[int, bytes]]]:
        with self.lock:
            return list(self.nodes), list(self.names)
