"""One cluster per machine: `minihpc up` from another state directory (an
installed minihpc, another checkout) refuses before it touches anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import started_containers

from minihpc import ROOT, STATE


def containers() -> list[str]:
    """Each container of the cluster with when it was started: a recreation or restart changes it."""
    return started_containers()


def test_up_from_another_state_directory_refuses_and_changes_nothing(client: object, tmp_path: Path) -> None:
    before = containers()
    env = {**os.environ, "MINIHPC_STATE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "minihpc", "up", "--nodes", "1"], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr == (f"minihpc: error: a minihpc cluster made from another state directory is on this machine "
                        f"({STATE}); one cluster per machine: remove it with MINIHPC_STATE_DIR={STATE} minihpc "
                        f"destroy --yes, or use it with MINIHPC_STATE_DIR={STATE}\n")
    assert list(tmp_path.iterdir()) == [], "nothing may be written for the refused cluster"
    assert containers() == before
