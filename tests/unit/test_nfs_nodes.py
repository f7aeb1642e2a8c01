"""The client's node table (nfs.nodes) over real handles in a temporary
directory, and inotify parsing; no FUSE."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from nfs.nodes import ROOT_ID, NodeTable
from nfs.notify import IN_CREATE, IN_MODIFY, parse
from nfs.syscalls import open_handle

FP = (7, 1, 1, 0)  # what the kernel was told: inode 7, ctime, mtime, size


class FakeWatcher:
    """Like inotify: one directory (inode) gets one wd, however reached."""

    def __init__(self) -> None:
        self.wds: dict[int, int] = {}
        self.removed: list[int] = []

    def add(self, fd: int) -> int:
        return self.wds.setdefault(os.stat(fd).st_ino, len(self.wds) + 1)

    def wd(self, path: Path) -> int:
        return self.wds[path.stat().st_ino]

    def remove(self, wd: int) -> None:
        self.removed.append(wd)


class Table:
    def __init__(self, root: Path) -> None:
        self.root, self.w = root, FakeWatcher()
        self.t = NodeTable(os.open(root, os.O_PATH | os.O_DIRECTORY), self.w)

    def look(self, parent: int, name: str, path: str, seen=FP) -> int:
        """What the client does on a lookup: a handle on the name, remembered."""
        return self.t.remember(parent, name.encode(), path, seen, fd=open_handle(self.t.fd(parent), name.encode()))


@pytest.fixture
def tt(tmp_path: Path) -> Table:
    for d in ("d/sub", "e"):
        (tmp_path / d).mkdir(parents=True)
    for f in ("f", "a", "b", "d/sub/f", "dd"):
        (tmp_path / f).write_text(f)
    return Table(tmp_path)


def test_root_is_known_and_watched(tt: Table):
    assert tt.t.path(ROOT_ID) == "/" and tt.w.wds == {tt.root.stat().st_ino: 1}
    assert tt.t.dirs_of(1) == [ROOT_ID]


def test_a_name_keeps_its_id_until_every_lookup_is_forgotten(tt: Table):
    t = tt.t
    a = tt.look(ROOT_ID, "f", "/f")
    fds = len(os.listdir("/proc/self/fd"))
    assert tt.look(ROOT_ID, "f", "/f") == a
    assert len(os.listdir("/proc/self/fd")) == fds, "a second handle on a known inode is closed at once"
    t.forget(a, 1)
    assert t.path(a) == "/f" and t.child(ROOT_ID, b"f") == a
    t.forget(a, 1)
    assert t.child(ROOT_ID, b"f") is None
    assert len(os.listdir("/proc/self/fd")) == fds - 1, "the handle is closed with the node"
    with pytest.raises(OSError) as e:
        t.path(a)
    assert e.value.errno == errno.ESTALE
    assert tt.look(ROOT_ID, "f", "/f") != a, "ids are never reused"


def test_directories_are_watched_while_known_files_never(tt: Table):
    d = tt.look(ROOT_ID, "d", "/d")
    tt.look(d, "sub", "/d/sub")
    tt.look(ROOT_ID, "f", "/f")
    assert len(tt.w.wds) == 3
    assert tt.t.dirs_of(tt.w.wd(tt.root / "d")) == [d]
    tt.t.forget(d, 1)
    assert tt.w.removed == [tt.w.wd(tt.root / "d")] and tt.t.dirs_of(tt.w.wd(tt.root / "d")) == []


def test_a_handle_follows_its_inode_not_its_name(tt: Table):
    """The attack the old path-string table allowed: a name replaced by a
    symlink out must not redirect the node that name once held."""
    d = tt.look(ROOT_ID, "d", "/d")
    os.rename(tt.root / "d", tt.root / "d.old")
    os.symlink("/etc", tt.root / "d")
    assert os.stat(tt.t.fd(d)).st_ino == (tt.root / "d.old").stat().st_ino
    assert "sub" in os.listdir(f"/proc/self/fd/{tt.t.fd(d)}")


def test_renaming_a_directory_moves_every_label_known_below_it(tt: Table):
    t = tt.t
    d = tt.look(ROOT_ID, "d", "/d")
    sub = tt.look(d, "sub", "/d/sub")
    f = tt.look(sub, "f", "/d/sub/f")
    other = tt.look(ROOT_ID, "dd", "/dd")
    t.moved(ROOT_ID, b"d", ROOT_ID, b"x", "/x")
    assert [t.path(i) for i in (d, sub, f, other)] == ["/x", "/x/sub", "/x/sub/f", "/dd"]
    assert t.child(ROOT_ID, b"d") is None and t.child(ROOT_ID, b"x") == d
    assert t.child_path(sub, b"g") == "/x/sub/g"


def test_renaming_over_a_name_replaces_it_and_unlink_drops_it(tt: Table):
    t = tt.t
    a = tt.look(ROOT_ID, "a", "/a")
    b = tt.look(ROOT_ID, "b", "/b")
    t.moved(ROOT_ID, b"a", ROOT_ID, b"b", "/b")
    assert t.child(ROOT_ID, b"b") == a and t.path(a) == "/b"
    assert t.path(b) == "/b", "the replaced node lives on until the kernel forgets it"
    t.unlinked(ROOT_ID, b"b")
    assert t.child(ROOT_ID, b"b") is None and t.path(a) == "/b"


def test_a_hard_link_is_the_same_node_under_a_second_name(tt: Table):
    t = tt.t
    a = tt.look(ROOT_ID, "a", "/a")
    os.link(tt.root / "a", tt.root / "l")
    assert tt.look(ROOT_ID, "l", "/l") == a, "one inode, one node"
    assert t.remember(ROOT_ID, b"l2", "/l2", FP, nid=a) == a
    assert t.child(ROOT_ID, b"l") == a and t.path(a) == "/l2"
    t.forget(a, 2)
    assert t.child(ROOT_ID, b"l") == a, "still referenced through a link"


def test_what_the_kernel_was_told_is_remembered_per_node(tt: Table):
    t = tt.t
    a = tt.look(ROOT_ID, "a", "/a")
    assert t.seen(a) == FP
    t.saw(a, (1, 2, 3, 4))
    assert t.seen(a) == (1, 2, 3, 4)
    t.forget(a, 1)
    assert t.seen(a) is None
    t.saw(a, (5, 6, 7, 8))  # a forgotten node: ignored
    assert t.seen(a) is None


def test_a_name_that_now_holds_another_file_gets_a_new_id(tt: Table):
    t = tt.t
    f = tt.look(ROOT_ID, "f", "/f")
    (tt.root / "f").write_text("changed")
    assert tt.look(ROOT_ID, "f", "/f") == f, "same file, changed"
    (tt.root / "f").unlink()
    (tt.root / "f").write_text("another")
    other = tt.look(ROOT_ID, "f", "/f")
    assert other != f and t.child(ROOT_ID, b"f") == other
    (tt.root / "f").unlink()
    (tt.root / "f").mkdir()
    d = tt.look(ROOT_ID, "f", "/f")
    assert d != other and tt.t.dirs_of(tt.w.wd(tt.root / "f")) == [d], "a directory now: a new id, and watched"


def test_known_answers_only_for_the_same_inode(tt: Table):
    a = tt.look(ROOT_ID, "a", "/a")
    ino = (tt.root / "a").stat().st_ino
    assert tt.t.known(ROOT_ID, b"a", ino) == a
    assert tt.t.known(ROOT_ID, b"a", ino + 1) is None
    assert tt.t.known(ROOT_ID, b"zz", ino) is None


def test_inotify_events_are_parsed_with_padded_names():
    def event(wd: int, mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name)) if name else b""
        return struct.pack("iIII", wd, mask, 0, len(padded)) + padded
    data = event(1, IN_CREATE, b"out.txt") + event(2, IN_MODIFY, b"") + event(1, IN_MODIFY, b"x")
    assert parse(data) == [(1, IN_CREATE, b"out.txt"), (2, IN_MODIFY, b""), (1, IN_MODIFY, b"x")]
