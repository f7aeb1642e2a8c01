"""The client's node table (nfs.nodes) and inotify parsing, without FUSE."""

from __future__ import annotations

import errno
import struct

import pytest

from nfs.nodes import ROOT_ID, NodeTable
from nfs.notify import IN_CREATE, IN_MODIFY, parse

FP = (7, 1, 1, 0)  # what the kernel was told: inode 7, ctime, mtime, size


class FakeWatcher:
    def __init__(self) -> None:
        self.wds: dict[str, int] = {}
        self.removed: list[int] = []

    def add(self, path: str) -> int:
        # Like inotify: the same directory (here: the same path) gets the same wd.
        return self.wds.setdefault(path, len(self.wds) + 1)

    def remove(self, wd: int) -> None:
        self.removed.append(wd)


@pytest.fixture
def table() -> tuple[NodeTable, FakeWatcher]:
    w = FakeWatcher()
    return NodeTable(lambda p: "/srv" + p, w), w


def test_root_is_known_and_watched(table):
    t, w = table
    assert t.path(ROOT_ID) == "/" and w.wds == {"/srv/": 1}
    assert t.dirs_of(1) == [ROOT_ID]


def test_a_name_keeps_its_id_until_every_lookup_is_forgotten(table):
    t, _ = table
    a = t.remember(ROOT_ID, b"f", FP, False, "/f")
    assert t.remember(ROOT_ID, b"f", FP, False, "/f") == a
    t.forget(a, 1)
    assert t.path(a) == "/f" and t.child(ROOT_ID, b"f") == a
    t.forget(a, 1)
    assert t.child(ROOT_ID, b"f") is None
    with pytest.raises(OSError) as e:
        t.path(a)
    assert e.value.errno == errno.ESTALE
    assert t.remember(ROOT_ID, b"f", FP, False, "/f") != a, "ids are never reused"


def test_directories_are_watched_while_known_files_never(table):
    t, w = table
    d = t.remember(ROOT_ID, b"d", FP, True, "/d")
    t.remember(d, b"f", FP, False, "/d/f")
    assert set(w.wds) == {"/srv/", "/srv/d"}
    assert t.dirs_of(w.wds["/srv/d"]) == [d]
    t.forget(d, 1)
    assert w.removed == [w.wds["/srv/d"]] and t.dirs_of(w.wds["/srv/d"]) == []


def test_one_watch_serves_two_ids_of_the_same_directory(table):
    t, w = table
    one = t.remember(ROOT_ID, b"d", FP, True, "/d")
    w.wds["/srv/e"] = w.wds["/srv/d"]  # renamed elsewhere: inotify hands out the same wd
    two = t.remember(ROOT_ID, b"e", FP, True, "/e")
    assert sorted(t.dirs_of(w.wds["/srv/d"])) == [one, two]
    t.forget(one, 1)
    assert w.removed == [] and t.dirs_of(w.wds["/srv/d"]) == [two]


def test_renaming_a_directory_moves_every_path_known_below_it(table):
    t, _ = table
    d = t.remember(ROOT_ID, b"d", FP, True, "/d")
    sub = t.remember(d, b"sub", FP, True, "/d/sub")
    f = t.remember(sub, b"f", FP, False, "/d/sub/f")
    other = t.remember(ROOT_ID, b"dd", FP, False, "/dd")
    t.moved(ROOT_ID, b"d", ROOT_ID, b"x", "/x")
    assert [t.path(i) for i in (d, sub, f, other)] == ["/x", "/x/sub", "/x/sub/f", "/dd"]
    assert t.child(ROOT_ID, b"d") is None and t.child(ROOT_ID, b"x") == d
    assert t.child_path(sub, b"g") == "/x/sub/g"


def test_renaming_over_a_name_replaces_it_and_unlink_drops_it(table):
    t, _ = table
    a = t.remember(ROOT_ID, b"a", FP, False, "/a")
    b = t.remember(ROOT_ID, b"b", FP, False, "/b")
    t.moved(ROOT_ID, b"a", ROOT_ID, b"b", "/b")
    assert t.child(ROOT_ID, b"b") == a and t.path(a) == "/b"
    assert t.path(b) == "/b", "the replaced node lives on until the kernel forgets it"
    t.unlinked(ROOT_ID, b"b")
    assert t.child(ROOT_ID, b"b") is None and t.path(a) == "/b"


def test_a_hard_link_is_the_same_node_under_a_second_name(table):
    t, _ = table
    a = t.remember(ROOT_ID, b"a", FP, False, "/a")
    assert t.remember(ROOT_ID, b"l", FP, False, "/l", ino=a) == a
    assert t.child(ROOT_ID, b"l") == a
    t.forget(a, 1)
    assert t.path(a) == "/a", "still referenced through the link"


def test_what_the_kernel_was_told_is_remembered_per_node(table):
    t, _ = table
    a = t.remember(ROOT_ID, b"a", FP, False, "/a")
    assert t.seen(a) == FP
    t.saw(a, (1, 2, 3, 4))
    assert t.seen(a) == (1, 2, 3, 4)
    t.forget(a, 1)
    assert t.seen(a) is None
    t.saw(a, (5, 6, 7, 8))  # a forgotten node: ignored
    assert t.seen(a) is None


def test_inotify_events_are_parsed_with_padded_names():
    def event(wd: int, mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name)) if name else b""
        return struct.pack("iIII", wd, mask, 0, len(padded)) + padded
    data = event(1, IN_CREATE, b"out.txt") + event(2, IN_MODIFY, b"") + event(1, IN_MODIFY, b"x")
    assert parse(data) == [(1, IN_CREATE, b"out.txt"), (2, IN_MODIFY, b""), (1, IN_MODIFY, b"x")]


def test_a_name_that_now_holds_another_file_gets_a_new_id(table):
    t, w = table
    f = t.remember(ROOT_ID, b"x", (10, 1, 1, 0), False, "/x")
    assert t.remember(ROOT_ID, b"x", (10, 2, 2, 5), False, "/x") == f, "same file, changed"
    other = t.remember(ROOT_ID, b"x", (11, 3, 3, 0), False, "/x")
    assert other != f and t.child(ROOT_ID, b"x") == other
    d = t.remember(ROOT_ID, b"x", (11, 4, 4, 0), True, "/x")
    assert d != other and "/srv/x" in w.wds, "a directory now: a new id, and watched"
