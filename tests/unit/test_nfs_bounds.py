"""What keeps one user from taking the client from the others, without FUSE:
fair queues, bounded node descriptors, streamed listings, bounded caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nfs import model as model_mod
from nfs.fuse_ll import Fair
from nfs.model import Attrs, NodeModel
from nfs.nodes import PATH_MAX, ROOT_ID, NodeTable
from nfs.profiles import named
from nfs.syscalls import getdents, open_by_handle, open_handle


def test_fair_serves_users_in_turn_and_caps_each_one():
    """As the serving loops use it: a request read is admitted at once while
    its user has room and nothing queued, else queued; a freed slot takes the
    next queued request of a user with room, users in turn."""
    fair = Fair(per_user=2)
    assert [fair.admit(1000, f"noisy{i}") for i in range(5)] == [True, True, False, False, False]
    assert [fair.admit(1001, f"quiet{i}") for i in range(3)] == [True, True, False]
    assert fair.take_nowait() is None, "each user already has two in service"
    fair.done(1000)
    fair.done(1001)
    assert [fair.take_nowait() for _ in range(3)] == [(1000, "noisy2"), (1001, "quiet2"), None]
    fair.done(1000)
    fair.done(1000)
    assert [fair.take_nowait() for _ in range(3)] == [(1000, "noisy3"), (1000, "noisy4"), None]
    # A user with requests queued waits behind them: the next is queued, not admitted.
    fair.done(1001)
    assert fair.admit(1001, "quiet3") is True
    assert fair.admit(1000, "noisy5") is False


class FakeWatcher:
    def add(self, fd: int) -> int:
        return -1

    def remove(self, wd: int) -> None:
        pass


@pytest.mark.skipif(os.geteuid() != 0, reason="open_by_handle_at needs CAP_DAC_READ_SEARCH")
def test_node_descriptors_are_bounded_and_reopened_by_handle(tmp_path: Path):
    for i in range(50):
        (tmp_path / f"f{i}").write_text(str(i))
    mount_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    t = NodeTable(os.open(tmp_path, os.O_PATH | os.O_DIRECTORY), FakeWatcher(),
                  reopen=lambda h: open_by_handle(mount_fd, h), max_open=8)
    before = len(os.listdir("/proc/self/fd"))
    nids = [t.remember(ROOT_ID, f"f{i}".encode(), f"/f{i}", (0, 0, 0, 0),
                       fd=open_handle(t.fd(ROOT_ID), f"f{i}".encode())) for i in range(50)]
    t.unpin()
    assert t.open_count() == 8 and len(os.listdir("/proc/self/fd")) <= before + 8
    # Any node still reaches its own inode, reopened from its handle.
    for i, nid in enumerate(nids):
        assert os.stat(t.fd(nid)).st_ino == (tmp_path / f"f{i}").stat().st_ino
        t.unpin()
    assert t.reopened >= 42 and t.open_count() == 8
    # A descriptor in use by a request is never closed under it.
    fds = [t.fd(nid) for nid in nids[:20]]
    assert t.open_count() == 20
    assert [os.stat(fd).st_ino for fd in fds] == [(tmp_path / f"f{i}").stat().st_ino for i in range(20)]
    t.unpin()
    assert t.open_count() == 8
    os.close(mount_fd)


def test_labels_stop_growing_past_path_max(tmp_path: Path):
    t = NodeTable(os.open(tmp_path, os.O_PATH | os.O_DIRECTORY), FakeWatcher())
    parent = ROOT_ID
    name = "d" * 250
    for _ in range(40):
        os.mkdir(name, dir_fd=t.fd(parent))
        path = t.child_path(parent, name.encode())
        parent = t.remember(parent, name.encode(), path, (0, 0, 0, 0),
                            fd=open_handle(t.fd(parent), name.encode()))
    assert max(len(n.path) for n in t.nodes.values()) < PATH_MAX + 300


def test_listings_stream_from_the_directory_by_offset(tmp_path: Path):
    names = {f"entry-{i:05d}".encode() for i in range(3000)}
    for n in names:
        (tmp_path / os.fsdecode(n)).write_text("")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    seen, off = [], 0
    while batch := getdents(fd, off, 4096):
        half = batch[: max(1, len(batch) // 2)]  # a reader that takes only part of each batch
        seen += [name for name, *_ in half]
        off = half[-1][3]
    os.close(fd)
    assert set(seen) - {b".", b".."} == names and len(seen) == len(names) + 2


def test_the_models_caches_are_bounded(monkeypatch):
    monkeypatch.setattr(model_mod, "CACHE_MAX", 100)

    class Store:
        def stat(self, path: str) -> Attrs:
            return Attrs(0o100644, hash(path) & 0xFFFF, 1, 0, 0, 0, 0, 0, 0)

        def listdir(self, path: str) -> list:
            return []
    m = NodeModel("A", named("linux").with_options(rtt_ms=0, jitter_ms=0), Store(), clock=lambda: 0.0,
                  sleep=lambda s: None)
    for i in range(1000):
        m.stat(f"/f{i}")
        m.own_change(f"/d/g{i}")
    assert len(m._attr) <= 100 and len(m._own) <= 100 and len(m._seen) <= 100 and len(m._neg) <= 100
