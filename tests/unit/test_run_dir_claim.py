"""Cluster.put() and check_dir() refuse a destination someone else could have
planted or could change: a symlink, a file, a directory others can write, one
of another user's, or one under a directory others can write. The checks run
in bash as the writing user; here that bash is this machine's, on a temporary
directory (no cluster)."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from minihpc.cluster import Cluster, UnsafeDir
from minihpc.facts import Facts


class Local:
    """A transport that runs the script here, as whoever runs the tests."""

    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        return ["bash", "-c", script]

    def done(self, argv: list[str]) -> None:
        pass


@pytest.fixture
def c() -> Cluster:
    me = pwd.getpwuid(os.getuid()).pw_name
    return Cluster(Facts(nodes=["c1"], cpus=2, mem_mb=1000, scratch_mb=100, lab_user=me, lab_uid=os.getuid()),
                   Local())


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A /shared of our own: sticky and writable by all, as the cluster's is."""
    s = tmp_path / "shared"
    s.mkdir()
    s.chmod(0o1777)
    return s


@pytest.fixture
def src(tmp_path: Path) -> Path:
    w = tmp_path / "src"
    (w / "scripts").mkdir(parents=True)
    (w / "Snakefile").write_text("rule all:\n")
    (w / "scripts/x.py").write_text("print(1)\n")
    return w


def test_a_new_directory_is_made_ours_and_filled(c: Cluster, shared: Path, src: Path) -> None:
    c.check_dir(f"{shared}/run")
    assert not (shared / "run").exists(), "a check makes nothing"
    r = c.put(f"{shared}/run", [(src, ".", None)])
    assert r.rc == 0, r.out
    assert (shared / "run/scripts/x.py").read_text() == "print(1)\n"
    assert oct((shared / "run").stat().st_mode & 0o7777) == "0o755"


def test_a_rerun_into_our_own_directory_is_fine_and_fresh_empties_it(c: Cluster, shared: Path, src: Path) -> None:
    (shared / "run").mkdir(mode=0o700)
    (shared / "run/old").write_text("old\n")
    assert c.put(f"{shared}/run", [(src, ".", None)]).rc == 0
    assert (shared / "run/old").exists() and (shared / "run/Snakefile").exists()
    assert c.put(f"{shared}/run", [(src, ".", None)], fresh=True).rc == 0
    assert not (shared / "run/old").exists() and (shared / "run/Snakefile").exists()


@pytest.mark.parametrize(("make", "why"), [
    (lambda d: (d.mkdir(), d.chmod(0o777)), "(mode 777) can be written by others"),
    (lambda d: (d.mkdir(), d.chmod(0o775)), "(mode 775) can be written by others"),
    (lambda d: d.symlink_to(d.parent.parent / "elsewhere"), "is a symbolic link"),
    (lambda d: d.symlink_to("/nonexistent"), "is a symbolic link"),
    (lambda d: d.write_text("x"), "is a regular file, not a directory"),
])
def test_a_destination_that_is_not_safely_ours_is_refused_and_left_alone(c: Cluster, shared: Path, src: Path,
                                                                          make, why: str) -> None:
    (shared.parent / "elsewhere").mkdir()
    dest = shared / "run"
    make(dest)
    (shared.parent / "elsewhere/planted").write_text("x")
    before = sorted(p.name for p in shared.parent.rglob("*"))
    for attempt in (lambda: c.check_dir(str(dest)), lambda: c.put(str(dest), [(src, ".", None)], fresh=True)):
        with pytest.raises(UnsafeDir) as e:
            attempt()
        assert why in e.value.what and e.value.what.startswith(f"refusing {dest}: {dest}"), e.value.what
        assert e.value.where == "dir" and "that no one else can write to: have its owner remove it" in e.value.fix
    assert sorted(p.name for p in shared.parent.rglob("*")) == before, "nothing was written or removed"


def test_a_parent_others_can_write_without_the_sticky_bit_is_refused(c: Cluster, shared: Path, src: Path) -> None:
    shared.chmod(0o777)
    with pytest.raises(UnsafeDir) as e:
        c.put(f"{shared}/run", [(src, ".", None)])
    assert e.value.where == "above" and f"{shared} (mode 777) can be written by others" in e.value.what
    assert "must belong to root or" in e.value.fix
    assert not (shared / "run").exists()


def private_group() -> bool:
    me = pwd.getpwuid(os.getuid()).pw_name
    g = grp.getgrgid(os.getgid())
    return g.gr_name == me and set(g.gr_mem) <= {me}


@pytest.mark.skipif(not private_group(), reason="needs a user whose group is their own (user private groups)")
def test_a_parent_of_ours_writable_by_our_private_group_is_fine(c: Cluster, shared: Path, src: Path) -> None:
    """What umask 002 makes (a site's work_dir made over ssh): only we are in that group."""
    shared.chmod(0o775)
    assert c.put(f"{shared}/run", [(src, ".", None)]).rc == 0
    if os.geteuid() == 0:  # the same mode, another group: refused
        os.chown(shared, -1, 65534)
        with pytest.raises(UnsafeDir, match=r"\(mode 775\) can be written by others"):
            c.check_dir(f"{shared}/run")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user's needs root")
def test_another_users_directory_is_refused(c: Cluster, shared: Path, src: Path) -> None:
    (shared / "run").mkdir(mode=0o755)
    os.chown(shared / "run", 65534, 65534)
    with pytest.raises(UnsafeDir, match=r"belongs to nobody \(uid 65534\), not to root"):
        c.put(f"{shared}/run", [(src, ".", None)], fresh=True)
    assert list((shared / "run").iterdir()) == []


@pytest.mark.parametrize("dest", ["relative/run", "/shared/..", "/shared/a/../b", "/"])
def test_a_destination_that_is_not_a_plain_path_is_refused(c: Cluster, dest: str) -> None:
    with pytest.raises(Exception, match="is not a plain absolute path"):
        c.check_dir(dest)
