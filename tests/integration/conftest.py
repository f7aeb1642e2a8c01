"""The `mounts` fixture: the NFS client mounted twice on this host."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nfsmounts import Mounts

from nfs.localmount import local_cluster
from nfs.profiles import named


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    assert shutil.which("fusermount3"), "fusermount3 missing: run `make bootstrap` (installs fuse3)"
    assert os.path.exists("/dev/fuse"), "/dev/fuse missing: this host cannot mount FUSE filesystems"
    # Not under pytest's tmp_path: its parent is private to root, and the lab user must reach the mounts.
    root = Path(tempfile.mkdtemp(prefix="minihpc-nfs-"))
    try:
        with local_cluster(root, named("off")) as lc:
            yield Mounts(lc)
            # A handler's bug answers EIO: show its traceback with the test.
            for node in lc.nodes:
                assert "Traceback" not in lc.log(node), f"client {node} logged:\n{lc.log(node)[-4000:]}"
    finally:
        # rm, not shutil.rmtree: a test may leave a tree deeper than Python recurses.
        subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)
