"""Caller credentials (nfs.creds) and the confined path store (nfs.model.BeneathStore)."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from nfs.creds import GROUPS_TTL, Credentials
from nfs.model import BeneathStore
from nfs.syscalls import open_beneath, set_thread_creds


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(groups: dict[int, tuple[int, ...]]):
    applied: list[tuple] = []
    asked: list[int] = []

    def groups_of(req) -> tuple[int, ...]:
        asked.append(req)
        return groups[req]
    clock = Clock()
    return Credentials(groups_of, clock, lambda *who: applied.append(who)), applied, asked, clock


def test_the_thread_switches_only_when_the_caller_differs():
    c, applied, asked, _ = make({11: (5,), 12: (6,)})
    c.caller(11, 1000, 1000, pid=11)
    c.caller(11, 1000, 1000, pid=11)
    c.caller(12, 1001, 1001, pid=12)
    c.root()
    c.caller(0, 0, 0, pid=1)  # root: no groups to read
    assert applied == [(1000, 1000, (5,)), (1001, 1001, (6,)), (0, 0, ())]
    assert asked == [11, 12]


def test_a_callers_groups_are_read_again_after_a_while():
    c, applied, asked, clock = make({11: (5,)})
    c.caller(11, 1000, 1000, pid=11)
    clock.t += GROUPS_TTL / 2
    c.caller(11, 1000, 1000, pid=11)
    clock.t += GROUPS_TTL
    c.caller(11, 1000, 1000, pid=11)
    assert asked == [11, 11]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching credentials needs root")
def test_thread_credentials_apply_to_that_thread_only(tmp_path: Path):
    tmp_path.chmod(0o755)
    seen: dict[str, object] = {}

    def as_user() -> None:
        set_thread_creds(1000, 1000, ())
        try:
            open(tmp_path / "by-user", "w").close()
        except PermissionError as e:
            seen["user"] = e.errno
        finally:
            set_thread_creds(0, 0, ())
    t = threading.Thread(target=as_user)
    t.start()
    t.join()
    open(tmp_path / "by-root", "w").close()  # this thread stayed root
    assert seen == {"user": errno.EACCES}
    assert (tmp_path / "by-root").stat().st_uid == 0


def test_the_store_never_leaves_the_export_or_follows_a_symlink(tmp_path: Path):
    export = tmp_path / "export"
    (export / "d").mkdir(parents=True)
    (export / "d/f").write_text("x")
    (tmp_path / "outside").write_text("secret")
    os.symlink(tmp_path, export / "up")
    os.symlink("f", export / "d/link")
    store = BeneathStore(os.open(export, os.O_PATH | os.O_DIRECTORY))
    assert store.stat("/d/f").size == 1
    assert store.stat("/d/link").size == 1 and os.path.islink(export / "d/link"), "a trailing symlink is itself"
    for path in ("/up/outside", "/../outside", "/d/../../outside"):
        with pytest.raises(FileNotFoundError):
            store.stat(path)
    assert sorted(e[0] for e in store.listdir("/d")) == ["f", "link"]
    with pytest.raises(FileNotFoundError):
        store.listdir("/up")
    with pytest.raises(OSError) as e:
        open_beneath(os.open(export, os.O_PATH), "/proc/self/root/etc")
    assert e.value.errno in (errno.ENOENT, errno.EXDEV, errno.ELOOP)
