"""The order of what the client tells the kernel, without FUSE: a lock grant
and inotify's reports of other nodes' writes, and profile switches against
requests in service."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from nfs.client import SharedFS
from nfs.fuse_ll import Gate
from nfs.model import BeneathStore, NodeModel
from nfs.nodes import ROOT_ID, fingerprint
from nfs.notify import Inotify
from nfs.profiles import named
from nfs.syscalls import open_handle


@pytest.fixture
def fs(tmp_path: Path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "counter").write_text("99")
    root_fd = os.open(export, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    inotify = Inotify()
    fs = SharedFS(root_fd, NodeModel("A", named("off"), BeneathStore(root_fd)), inotify, max_handles=64)
    fd = open_handle(root_fd, b"counter")
    s = os.stat(fd)
    nid = fs.nodes.remember(ROOT_ID, b"counter", "/counter", fingerprint(s), fd=fd, s=s)  # the kernel looked it up
    fh = os.open(export / "counter", os.O_RDWR | os.O_CLOEXEC)  # the caller's open file
    yield fs, nid, fh, export / "counter"
    os.close(fh)
    os.close(inotify.fd)


def queued(fs: SharedFS) -> list[tuple]:
    out = []
    while not fs._stale.empty():
        out.append(fs._stale.get())
    return out


def other_node_writes(path: Path, text: str) -> None:
    """Another node's write: the backing file changes behind this client."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, text.encode())
    os.close(fd)


def test_no_invalidation_reaches_the_kernel_after_a_lock_grant_for_an_earlier_write(fs):
    """The kernel ignores a GETATTR reply an invalidation overtook and reads
    with the size it had ("99" of "100" reads "10"): inotify's late report of
    a write made before the lock was granted must not invalidate after it."""
    fs, nid, fh, path = fs
    other_node_writes(path, "100")  # under the other node's lock; inotify not read yet
    fs._answer(None, nid, True, fh, fs.nodes.get(nid).key)(0)  # then this node gets the lock
    fs.on_inotify()  # the report of the earlier write arrives late
    stale = queued(fs)
    assert [s[:3] for s in stale] == [("data", nid, b"")], stale
    assert len(stale[0]) == 4, "the grant's reply must follow its invalidation"


def test_a_write_after_the_grant_is_still_invalidated(fs):
    fs, nid, fh, path = fs
    fs._answer(None, nid, True, fh, fs.nodes.get(nid).key)(0)
    queued(fs)
    time.sleep(0.01)  # a later ctime
    other_node_writes(path, "101")  # someone not taking the lock
    fs.on_inotify()
    assert [s[:3] for s in queued(fs)] == [("data", nid, b"")]


def test_the_gate_waits_for_requests_in_service_and_holds_the_next():
    gate = Gate()
    events: list[str] = []
    in_service, release = threading.Event(), threading.Event()

    def request(name: str) -> None:
        gate.enter()  # as Session._serve passes it
        try:
            events.append(f"{name} starts")
            in_service.set()
            release.wait(5)
            events.append(f"{name} ends")
        finally:
            gate.leave()

    first = threading.Thread(target=request, args=("first",))
    first.start()
    assert in_service.wait(5)

    def switch() -> None:
        with gate.closed():
            events.append("switch")
            time.sleep(0.1)  # a request arriving now must wait for the switch
    switcher = threading.Thread(target=switch)
    switcher.start()
    time.sleep(0.1)
    assert "switch" not in events, "the switch ran while a request was in service"
    second = threading.Thread(target=request, args=("second",))
    release.set()
    first.join(5)
    switcher.join(0.05)
    second.start()
    for t in (switcher, second):
        t.join(5)
    assert events == ["first starts", "first ends", "switch", "second starts", "second ends"], events
