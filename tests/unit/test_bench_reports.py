"""Every benchmark's bench/results/<name>.md is what its committed JSON
renders to (bench/report.py), so the tables cannot drift from the figures."""

from __future__ import annotations

import re
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


def test_the_docs_headlines_are_the_results_figures() -> None:
    """docs/figures.md's headline of each benchmark states no number its
    results page (results/<name>.md, or the pages the paragraph links) lacks."""
    page = (RESULTS.parents[1] / "docs/figures.md").read_text()
    sections = re.findall(r"^## [^\n]*\(`([\w-]+)`\)\n(.*?)(?=^## |\Z)", page, re.M | re.S)
    assert {name for name, _ in sections} == set(SCRIPTS) - {"report"}
    for name, body in sections:
        headline = next(p for p in body.split("\n\n") if p.startswith("Headline"))
        pages = re.findall(r"\(results/([\w-]+)\.md\)", headline) or [name]
        text = "".join((RESULTS / f"{p}.md").read_text() for p in pages)
        missing = [n for n in re.findall(r"\d+(?:\.\d+)?", headline) if n not in text]
        assert not missing, f"docs/figures.md, {name}: {missing} not in {pages}"
