"""What keeps one user from taking the client from the others, without FUSE:
fair queues, bounded node descriptors, streamed listings, bounded caches."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
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


def refused(handle: bytes) -> int:
    raise PermissionError(1, "Operation not permitted")  # open_by_handle_at without CAP_DAC_READ_SEARCH


def test_without_the_handle_capability_nodes_are_reopened_by_name_however_deep(tmp_path: Path):
    """In a container (no CAP_DAC_READ_SEARCH) every reopen by handle is refused:
    a node is reopened by name from its nearest open ancestor instead, each
    ancestor checked to be its own inode, 1500 levels deep with no stack to
    spare, and files beside the chain too."""
    try:
        t = NodeTable(os.open(tmp_path, os.O_PATH | os.O_DIRECTORY), FakeWatcher(), reopen=refused, max_open=8)
        parent, chain = ROOT_ID, []
        for _ in range(1500):
            os.mkdir("a", dir_fd=t.fd(parent))
            parent = t.remember(parent, b"a", t.child_path(parent, b"a"), (0, 0, 0, 0),
                                fd=open_handle(t.fd(parent), b"a"))
            chain.append(parent)
            t.unpin()
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=t.fd(parent)), "w") as f:
            f.write("deep")
        leaf = t.remember(parent, b"f", t.child_path(parent, b"f"), (0, 0, 0, 0), fd=open_handle(t.fd(parent), b"f"))
        t.unpin()
        assert t.open_count() == 8
        deepest = tmp_path.joinpath(*["a"] * 1500)
        for depth in (1, 700, 1499):
            assert os.stat(t.fd(chain[depth - 1])).st_ino == tmp_path.joinpath(*["a"] * depth).stat().st_ino
            t.unpin()
        assert not t.by_handle and t.reopened >= 2
        # The leaf, once every ancestor's descriptor is closed: the whole chain walked by name.
        for nid in chain[-8:]:
            t.fd(nid)
            t.unpin()
        t.fd(chain[0])
        t.unpin()
        assert os.stat(t.fd(leaf)).st_ino == (deepest / "f").stat().st_ino
        t.unpin()
        assert t.open_count() == 8
    finally:
        subprocess.run(["rm", "-rf", str(tmp_path / "a")], check=True)  # (pytest's own cleanup: too deep)


@pytest.mark.parametrize("change", ["renamed", "replaced by a link", "replaced by another directory"])
def test_a_node_renamed_or_replaced_meanwhile_is_stale_never_another_inode(tmp_path: Path, change: str):
    t = NodeTable(os.open(tmp_path, os.O_PATH | os.O_DIRECTORY), FakeWatcher(), reopen=refused, max_open=1)
    (tmp_path / "d").mkdir()
    (tmp_path / "elsewhere").mkdir()
    nid = t.remember(ROOT_ID, b"d", "/d", (0, 0, 0, 0), fd=open_handle(t.fd(ROOT_ID), b"d"))
    other = t.remember(ROOT_ID, b"elsewhere", "/elsewhere", (0, 0, 0, 0),
                       fd=open_handle(t.fd(ROOT_ID), b"elsewhere"))
    t.unpin()
    assert os.stat(t.fd(other)).st_ino and t.unpin() is None  # d's descriptor is the one closed
    os.rename(tmp_path / "d", tmp_path / "d-moved")
    if change == "replaced by a link":
        (tmp_path / "d").symlink_to(tmp_path / "elsewhere")
    elif change == "replaced by another directory":
        (tmp_path / "d").mkdir()
    with pytest.raises(OSError) as e:
        t.fd(nid)
    assert e.value.errno == errno.ESTALE


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/sbin/capsh").exists(),
                    reason="drops CAP_DAC_READ_SEARCH with capsh, as root")
def test_a_client_without_cap_dac_read_search_still_reopens(tmp_path: Path):
    """The container's case for real: open_by_handle_at refused by the kernel, nodes still reached."""
    script = (
        "import os, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from nfs.nodes import ROOT_ID, NodeTable\n"
        "from nfs.syscalls import open_by_handle, open_handle\n"
        "top = sys.argv[1]\n"
        "class W:\n"
        "    def add(self, fd): return -1\n"
        "    def remove(self, wd): pass\n"
        "m = os.open(top, os.O_RDONLY | os.O_DIRECTORY)\n"
        "t = NodeTable(os.open(top, os.O_PATH | os.O_DIRECTORY), W(), reopen=lambda h: open_by_handle(m, h), "
        "max_open=4)\n"
        "ids = [t.remember(ROOT_ID, f'f{i}'.encode(), f'/f{i}', (0, 0, 0, 0), "
        "fd=open_handle(t.fd(ROOT_ID), f'f{i}'.encode())) for i in range(20)]\n"
        "t.unpin()\n"
        "ok = all(os.stat(t.fd(n)).st_ino == os.stat(os.path.join(top, f'f{i}')).st_ino for i, n in enumerate(ids))\n"
        "print(ok, t.by_handle, t.reopened)\n")
    for i in range(20):
        (tmp_path / f"f{i}").write_text(str(i))
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(["/usr/sbin/capsh", "--drop=cap_dac_read_search", "--", "-c",
                        f"exec {sys.executable} - {tmp_path} {root}"], input=script, capture_output=True, text=True,
                       check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    ok, by_handle, reopened = r.stdout.split()
    assert (ok, by_handle) == ("True", "False") and int(reopened) >= 16, r.stdout
