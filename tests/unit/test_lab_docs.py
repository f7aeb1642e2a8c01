"""What the demos print and what the lab guide says stay the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from minihpc.course.demos import DEMOS

GUIDE = Path(__file__).resolve().parents[2] / "lab/GUIDE.md"


@pytest.mark.parametrize("name", list(DEMOS))
def test_each_demo_has_its_command_and_its_fix_in_the_guide(name: str) -> None:
    guide = " ".join(GUIDE.read_text().split())
    assert f"minihpc demo {name}" in guide
    assert " ".join(DEMOS[name].fix.split()) in guide
