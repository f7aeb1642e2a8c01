"""Every benchmark's bench/results/<name>.md is what its committed JSON
renders to (bench/report.py), so the tables cannot drift from the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report
from minihpc.commands.bench import SCRIPTS

RESULTS = Path(__file__).resolve().parents[2] / "bench/results"
NAMES = report.names(RESULTS)


def test_every_benchmark_has_its_json_and_md() -> None:
    measured = set(SCRIPTS) - {"suite", "report"}
    assert measured <= set(NAMES) and any(n.startswith("suite-") for n in NAMES), NAMES
    assert sorted(p.stem for p in RESULTS.glob("*.md")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_committed_md_is_what_its_json_renders_to(name: str) -> None:
    assert (RESULTS / f"{name}.md").read_text() == report.render(name, RESULTS), \
        f"bench/results/{name}.md is stale: python -m bench.report {name}"
