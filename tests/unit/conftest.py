"""What the unit tests of the bring-up's knobs share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from minihpc import bringup, configs, releases, stacks
from minihpc.topology import Topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Path]:
    """A cluster made from this state, of a release and a stack, with `jobs` in its queue: its run directory."""
    def make(release: releases.Release | None = None, stack: stacks.Stack | None = None, jobs: int = 0) -> Path:
        run = tmp_path / ".run"
        configs.render(Topology.from_env({}), run, ROOT / "docker-compose.yml", release, stack=stack)
        monkeypatch.setattr(bringup, "RUN_DIR", run)
        monkeypatch.setattr(bringup, "NODES_FILE", run / "compose.nodes.yml")
        monkeypatch.setattr(bringup, "_jobs_in_queue", lambda: jobs)
        return run
    return make
