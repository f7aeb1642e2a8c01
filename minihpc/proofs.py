"""Proofs: checks judged on evidence from a system, and what is made of them.

A check names one condition, whether it held, and the evidence it was judged
on (command output, sacct rows, file contents); a Proof is a named group of
checks. `table` prints checks as a pass/fail table, `write_evidence` keeps
every check with its evidence, `write` keeps a proof artifact (real command
output) as a text file, `verdict` says how many passed. The course
(minihpc.course), the site check (minihpc.sitecheck) and any feature that
proves something on a cluster use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from minihpc.cluster import Result


@dataclass
class Check:
    proof: str
    name: str
    ok: bool
    evidence: str


class Proof:
    """A named group of checks. A check names one condition and keeps the
    evidence it was judged on (tests/unit/test_lab_checks.py holds the
    course's every call to that: one condition, never an `and` of several,
    evidence given)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checks: list[Check] = []

    def check(self, name: str, ok: bool, evidence: str) -> bool:
        self.checks.append(Check(self.name, name, bool(ok), evidence))
        return bool(ok)

    def exit(self, name: str, r: Result, zero: bool = True) -> bool:
        """`r` exited 0 (or, with zero=False, did not); the evidence is its command, tail and code."""
        return self.check(name, (r.rc == 0) == zero, tail(r))

    def says(self, name: str, r: Result | str, text: str) -> bool:
        """`text` is in the output; the evidence is the line that holds it (or the tail)."""
        out = r.out if isinstance(r, Result) else r
        return self.check(name, text in out, line_with(out, text) or tail(r))

    def never_says(self, name: str, r: Result | str, text: str) -> bool:
        out = r.out if isinstance(r, Result) else r
        return self.check(name, text not in out, line_with(out, text) or tail(r))

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def tail(r: Result | str, n: int = 600) -> str:
    """A command's evidence: the command, the end of its output and its exit code (or the end of a text)."""
    if isinstance(r, Result):
        return f"$ {r.cmd}\n...{r.out[-n:]}\n[exit {r.rc}]"
    return r[-n:]


def line_with(out: str, text: str) -> str:
    """The line of `out` holding `text`, if any."""
    return next((line for line in out.splitlines() if text in line), "") if "\n" not in text else (
        text if text in out else "")


def write(proof_dir: Path, name: str, *parts: Result | str) -> Path:
    """A proof artifact, <proof_dir>/<name>.txt, from real command output (and notes)."""
    proof_dir.mkdir(parents=True, exist_ok=True)
    path = proof_dir / f"{name}.txt"
    path.write_text("".join(p.text() if isinstance(p, Result) else p for p in parts))
    return path


def table(checks: list[Check]) -> str:
    """One line a check: its proof, its name, PASS or FAIL."""
    w, cw = max(len(c.name) for c in checks), max(6, *(len(c.proof) for c in checks))
    # The first column's heading is the course's word for a proof, as every table has said.
    lines = [f"{'core':{cw}} {'check':{w}}  result", f"{'-' * cw} {'-' * w}  ------"]
    lines += [f"{c.proof:{cw}} {c.name:{w}}  {'PASS' if c.ok else 'FAIL'}" for c in checks]
    return "\n".join(lines)


def write_evidence(checks: list[Check], proof_dir: Path) -> Path:
    """Every check of this run with its result and the evidence it was judged on: <proof_dir>/checks.txt."""
    proof_dir.mkdir(parents=True, exist_ok=True)
    path = proof_dir / "checks.txt"
    path.write_text("".join(f"[{'PASS' if c.ok else 'FAIL'}] {c.proof}: {c.name}\n"
                            + "".join(f"    {line}\n" for line in c.evidence.splitlines()) for c in checks))
    return path


def verdict(checks: list[Check], evidence: Path) -> int:
    """Print how many checks passed and where their evidence (write_evidence)
    and the proof artifacts beside it are; 1 if any check failed, else 0."""
    failed = sum(not c.ok for c in checks)
    print(f"\n{len(checks) - failed}/{len(checks)} checks passed; each check's evidence in {evidence}, "
          f"proof artifacts in {evidence.parent}/")
    return 1 if failed else 0
