"""sacct rows whatever users put in their jobs: another user's comment or job
name can hold `|`, newlines and control bytes (sbatch stores any byte but
NUL), and must neither break the parse nor forge a row. No cluster: the text
is laid out as `sacct -n -p --delimiter=D` prints it (checked against Slurm
24.11 on the cluster: every field, the last too, followed by D)."""

from __future__ import annotations

import pytest

from minihpc.cluster import Cluster, parse_delimited
from minihpc.course.labctl import Labs, sacct_jobs
from minihpc.errors import MinihpcError
from minihpc.facts import Facts

FIELDS = ("JobID", "JobName", "Comment", "User", "State", "MaxRSS")
D = ":minihpc-0123456789abcdef0123456789abcdef:"


def sacct_text(rows: list[tuple[str, ...]], d: str = D) -> str:
    return "".join("".join(f"{v}{d}" for v in row) + "\n" for row in rows)


ROWS = [
    ("7", "wrap", "a|b|c", "alice", "COMPLETED", ""),
    ("7.batch", "batch", "", "", "COMPLETED", "624604K"),
    ("8", "n\nm|k", "x\ny|z\tw\x1fq\x1e", "alice", "CANCELLED by 1001", ""),
    # A comment that pretends to end its row and start another, as the old '|' parse would read it.
    ("9", "wrap", "1\n10|forged|rule_x|student|COMPLETED|1K", "alice", "FAILED", ""),
    ("10", "3f2a", "rule_make_wildcards_s=a", "student", "RUNNING", ""),
]


def test_user_text_cannot_break_or_forge_rows() -> None:
    rows = parse_delimited(sacct_text(ROWS), FIELDS, D)
    assert rows == [dict(zip(FIELDS, r, strict=True)) for r in ROWS]
    assert [r["JobID"] for r in rows] == ["7", "7.batch", "8", "9", "10"], "no row forged"


def test_no_rows_and_a_stray_line_are_told_apart() -> None:
    assert parse_delimited("", FIELDS, D) == [] and parse_delimited("\n", FIELDS, D) == []
    with pytest.raises(MinihpcError, match="sacct's output is not rows of 6 fields"):
        parse_delimited(sacct_text(ROWS[:1]) + "sacct: warning: something\n", FIELDS, D)
    with pytest.raises(MinihpcError, match="not rows of 6 fields"):
        parse_delimited(sacct_text([ROWS[0][:5]]), FIELDS, D)


class Recorder:
    """A transport that records the command and answers as sacct would, with
    the delimiter the command asked for."""

    def __init__(self, rows: list[tuple[str, ...]]) -> None:
        self.rows, self.argv = rows, []

    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        self.argv.append(script)
        d = script.split("--delimiter=")[1].split()[0]
        return ["printf", "%s", sacct_text(self.rows, d)]

    def done(self, argv: list[str]) -> None:
        pass


def test_cluster_sacct_draws_a_new_delimiter_each_call_and_keeps_its_return_shape() -> None:
    t = Recorder(ROWS)
    c = Cluster(Facts(nodes=["c1"], cpus=2, mem_mb=1000, scratch_mb=100), t)
    assert c.sacct("now-1hours", FIELDS, all_users=True) == [dict(zip(FIELDS, r, strict=True)) for r in ROWS]
    c.sacct("now-1hours", FIELDS)
    first, second = (s.split("--delimiter=")[1].split()[0] for s in t.argv)
    assert first != second and len(first) > 32
    assert " -X -a -p " in t.argv[0] and "-o JobID,JobName,Comment,User,State,MaxRSS" in t.argv[0]


def test_a_labs_jobs_are_those_started_in_its_own_directory(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """What a lab's proofs count (sacct_jobs): not the jobs of the user's
    other labs and runs, which may run meanwhile (the cluster tests run side by side)."""
    rows = [("7", "r1", "rule_a", "c1", "COMPLETED", "/shared/lab"),
            ("8", "r2", "rule_a", "c2", "FAILED", "/shared/lab-other"),
            ("9", "r1", "rule_b", "c1", "COMPLETED", "/shared/lab/sub")]
    c = Cluster(Facts(nodes=["c1", "c2"], cpus=2, mem_mb=1000, scratch_mb=100), Recorder(rows))
    assert [j["JobID"] for j in sacct_jobs(Labs(c, None, tmp_path).lab("lab"), "now-1hours")] == ["7"]
