"""The node ids the kernel holds for one client, and what it was told of each.

In libfuse's low-level protocol the filesystem names every inode the kernel
knows: here a (parent, name) with a path, counted by lookups until the kernel
forgets it. Directories are watched with inotify while the kernel knows them,
so that what another node changes in them can be invalidated.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import Protocol

from nfs.model import Attrs

ROOT_ID = 1


class Watcher(Protocol):
    def add(self, path: str) -> int: ...

    def remove(self, wd: int) -> None: ...


# What identifies one state of a file on the server: inode, ctime, mtime, size.
Fingerprint = tuple[int, int, int, int]


def fingerprint(s: os.stat_result | Attrs) -> Fingerprint:
    if isinstance(s, Attrs):
        return s.ino, s.ctime_ns, s.mtime_ns, s.size
    return s.st_ino, s.st_ctime_ns, s.st_mtime_ns, s.st_size


class Node:
    __slots__ = ("parent", "name", "path", "is_dir", "nlookup", "wd", "seen")

    def __init__(self, parent: int, name: bytes, path: str, is_dir: bool) -> None:
        self.parent, self.name, self.path, self.is_dir = parent, name, path, is_dir
        self.nlookup, self.wd = 0, -1
        self.seen: Fingerprint | None = None  # the state the kernel was told, or this node made


class NodeTable:
    """The node ids the kernel holds, each a (parent, name), counted by lookups
    until the kernel forgets them. Directories are watched while known."""

    def __init__(self, real: Callable[[str], str], watch: Watcher) -> None:
        self.real, self.watch = real, watch
        self.lock = threading.Lock()
        self.nodes: dict[int, Node] = {ROOT_ID: Node(0, b"", "/", True)}
        self.names: dict[tuple[int, bytes], int] = {}
        self.watched: dict[int, set[int]] = {}  # inotify wd -> directory node ids
        self._next = ROOT_ID + 1
        self._watch(ROOT_ID, "/")

    def path(self, ino: int) -> str:
        node = self.nodes.get(ino)
        if node is None:
            raise OSError(errno.ESTALE, "node forgotten")
        return node.path

    def child_path(self, parent: int, name: bytes) -> str:
        base = self.path(parent)
        return (base if base == "/" else base + "/") + os.fsdecode(name)

    def remember(self, parent: int, name: bytes, seen: Fingerprint, is_dir: bool, path: str,
                 ino: int | None = None) -> int:
        """One more kernel reference to parent/name (or, for a hard link, to
        `ino`), which the kernel was just told is in state `seen`. A name that
        now holds another file (another node replaced it) gets a new id."""
        with self.lock:
            if ino is None:
                ino = self.names.get((parent, name))
                node = self.nodes.get(ino) if ino is not None else None
                if node is not None and (node.is_dir != is_dir or (node.seen and node.seen[0] != seen[0])):
                    ino = None
            if ino is None or ino not in self.nodes:
                ino, self._next = self._next, self._next + 1
                self.nodes[ino] = Node(parent, name, path, is_dir)
                new_dir = is_dir
            else:
                new_dir = False
            self.names[(parent, name)] = ino
            node = self.nodes[ino]
            node.nlookup += 1
            node.seen = seen
        if new_dir:
            self._watch(ino, path)
        return ino

    def _watch(self, ino: int, path: str) -> None:
        wd = self.watch.add(self.real(path))
        if wd >= 0:
            with self.lock:
                node = self.nodes.get(ino)
                if node is not None:
                    node.wd = wd
                    self.watched.setdefault(wd, set()).add(ino)

    def forget(self, ino: int, n: int) -> None:
        with self.lock:
            node = self.nodes.get(ino)
            if node is None or ino == ROOT_ID:
                return
            node.nlookup -= n
            if node.nlookup > 0:
                return
            del self.nodes[ino]
            if self.names.get((node.parent, node.name)) == ino:
                del self.names[(node.parent, node.name)]
            dirs = self.watched.get(node.wd)
            if dirs is not None:
                dirs.discard(ino)
                if not dirs:
                    del self.watched[node.wd]
                    self.watch.remove(node.wd)

    def unlinked(self, parent: int, name: bytes) -> None:
        with self.lock:
            self.names.pop((parent, name), None)

    def moved(self, parent: int, name: bytes, newparent: int, newname: bytes, new_path: str) -> None:
        with self.lock:
            self.names.pop((newparent, newname), None)
            ino = self.names.pop((parent, name), None)
            if ino is None or ino not in self.nodes:
                return
            node = self.nodes[ino]
            old_path = node.path
            node.parent, node.name, node.path = newparent, newname, new_path
            self.names[(newparent, newname)] = ino
            if node.is_dir:  # everything known below it moved too
                prefix = old_path + "/"
                for n in self.nodes.values():
                    if n.path.startswith(prefix):
                        n.path = new_path + n.path[len(old_path):]

    def saw(self, ino: int, fp: Fingerprint | None) -> None:
        with self.lock:
            node = self.nodes.get(ino)
            if node is not None:
                node.seen = fp

    def seen(self, ino: int) -> Fingerprint | None:
        with self.lock:
            node = self.nodes.get(ino)
            return node.seen if node is not None else None

    def child(self, parent: int, name: bytes) -> int | None:
        with self.lock:
            return self.names.get((parent, name))

    def dirs_of(self, wd: int) -> list[int]:
        with self.lock:
            return list(self.watched.get(wd, ()))

    def snapshot(self) -> tuple[list[int], list[tuple[int, bytes]]]:
        with self.lock:
            return list(self.nodes), list(self.names)
