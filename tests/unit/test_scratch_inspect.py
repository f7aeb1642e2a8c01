"""scratch/inspect.py, the script the host runs on a node to see and empty
its scratch, on a real tmpfs: sizes, files, refusals, cleaning."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "scratch/inspect.py").read_bytes()


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    m = tmp_path / "scratch"
    m.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=1777", "scratch", str(m)], check=True)
    yield m
    subprocess.run(["umount", str(m)], check=True)


def inspect(*args: str) -> tuple[int, dict]:
    # As the client runs it: the script on standard input.
    r = subprocess.run([sys.executable, "-", *args], input=SCRIPT, capture_output=True, check=False)
    return r.returncode, json.loads(r.stdout)


def test_show_sizes_and_files(mount: Path) -> None:
    (mount / "u/job-1").mkdir(parents=True)
    (mount / "u/job-1/a").write_bytes(b"x" * 2 * 1024 * 1024)
    (mount / "u/link").symlink_to("/etc/passwd")
    rc, out = inspect("show", str(mount))
    assert rc == 0 and out["size_mb"] == 16 and out["used_mb"] == 2 and out["free_mb"] == 14
    assert out["files"] == [f"{mount}/u/job-1/a"]
    assert inspect("show", str(mount), f"{mount}/u/job-1/a")[1]["files"] == [f"{mount}/u/job-1/a"]
    assert inspect("show", str(mount), f"{mount}/none")[1]["files"] == []


def test_refuses_what_is_not_scratch(mount: Path, tmp_path: Path) -> None:
    assert inspect("show", str(mount), "/etc") == (2, {"mount": str(mount), "error": f"/etc is not under {mount}"})
    assert inspect("show", str(mount), f"{mount}/../x")[0] == 2
    assert inspect("clean", str(tmp_path)) == (1, {"mount": str(tmp_path),
                                                   "error": f"{tmp_path} is not a mount on this node"})
    assert inspect("wipe", str(mount))[0] == 2


def test_clean_empties_the_mount_and_keeps_it(mount: Path) -> None:
    (mount / "u/job-2").mkdir(parents=True)
    (mount / "u/job-2/f").write_text("f")
    (mount / ".filler").write_text("f")
    assert inspect("clean", str(mount)) == (0, {"mount": str(mount), "failed": []})
    assert list(mount.iterdir()) == [] and mount.is_mount()


def test_clean_keeps_each_users_own_directory_emptied(mount: Path) -> None:
    # Root made /scratch/<user> (cluster/scratchdir.py) and the user cannot make it again: it stays.
    (mount / "root/job-3").mkdir(parents=True)
    (mount / "root/job-3/f").write_text("f")
    (mount / "nobody").mkdir()  # named for a user, not theirs: goes
    assert inspect("clean", str(mount)) == (0, {"mount": str(mount), "failed": []})
    assert [p.name for p in mount.iterdir()] == ["root"] and list((mount / "root").iterdir()) == []
