"""The course cores driven through the slurm profile, as the lab user.

Each core runs the module's commands on the live cluster and judges them on
evidence from the system (sacct rows, files on /shared, exit codes, Snakemake's
messages); a test fails with every failed check and its evidence.
"""

from __future__ import annotations

import cores
import pytest
from support import Cluster


@pytest.mark.parametrize("name", list(cores.CORES))
def test_core(cluster: Cluster, name: str) -> None:
    core = cores.CORES[name](prefix=f"test-{name}")
    assert core.checks, "a core that checks nothing proves nothing"
    failed = [f"{c.name}: {c.detail[:400]}" for c in core.checks if not c.ok]
    assert not failed, "\n".join(failed)
