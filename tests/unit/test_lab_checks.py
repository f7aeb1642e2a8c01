"""Every check the lab makes names one condition and records its evidence:
no check is an `and` of several conditions, and every call gives evidence."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COURSE = Path(__file__).resolve().parents[2] / "minihpc/course"
HELPERS = {"check": 3, "exit": 2, "says": 3, "never_says": 3}


def calls() -> list[tuple[str, ast.Call]]:
    found = []
    for f in sorted(COURSE.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in HELPERS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "c"):
                found.append((f"{f.name}:{node.lineno}", node))
    return found


def test_the_course_makes_checks() -> None:
    assert len(calls()) > 100


@pytest.mark.parametrize(("where", "call"), calls(), ids=[w for w, _ in calls()])
def test_one_condition_with_evidence(where: str, call: ast.Call) -> None:
    assert len(call.args) + len(call.keywords) >= HELPERS[call.func.attr], f"{where}: no evidence given"
    if call.func.attr == "check":
        cond = call.args[1]
        assert not (isinstance(cond, ast.BoolOp) and isinstance(cond.op, ast.And)), \
            f"{where}: one check, several conditions ({ast.unparse(cond)[:100]}): split it"
        assert not (isinstance(call.args[2], ast.Constant) and not call.args[2].value), f"{where}: empty evidence"
