"""The GitHub Action's run step (action.yml, .ci/action run) driving `minihpc
run` on tests/workflows/byow with its inputs (workflow, args, fetch), on this
suite's cluster: its outputs (exit-code, report-dir), the report in the step
summary, the report's upload path and the fetched outputs, checked by
.ci/action-check. The whole Action, from its install to its cluster removed,
runs once more in `make test-action` (with prove: true)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from minihpc.cluster import Cluster as Client

ROOT = Path(__file__).resolve().parents[2]
NAME = "action-byow"  # the run's directory on /shared: the workflow input's name


@pytest.mark.cost(60)
def test_the_actions_run_step_runs_a_workflow_as_a_runner_runs_it(client: Client) -> None:
    try:
        r = subprocess.run([sys.executable, str(ROOT / ".ci/action-check"), str(ROOT / "tests/workflows/byow"),
                            "--cluster-up", "--with", f"workflow={NAME}", "--with", "args=--keep-going",
                            "--with", "fetch=results/grouped/*.txt", "--expect-exit", "1"],
                           capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=900)
    finally:
        client.sh(f"rm -rf /shared/{NAME}")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    assert "action-check: ok: 8 SLURM job(s) in the report, exit 1, on the cluster that was up" in r.stdout, \
        r.stdout[-2000:]
    # The steps that make and remove the Action's own cluster were left out, and only they.
    left_out = [line.split(":")[0].strip() for line in r.stdout.splitlines() if "left out (--cluster-up)" in line]
    assert left_out == ["install minihpc", "bring the cluster up", "take the cluster down"], r.stdout[-2000:]
