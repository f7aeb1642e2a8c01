"""cluster/class_logs.py, run here as it runs on the login node: each
learner's newest Snakemake log found only where Snakemake writes them, a
link, pipe or link-swapped directory never followed or waited on, bytes that
are not UTF-8 no crash, and the answer plain ASCII JSON; and
classroom.status read from what it prints, with squeue and sacct."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minihpc import classroom
from minihpc.cluster import Result
from minihpc.facts import Facts

HELPER = Path(__file__).resolve().parents[2] / "cluster/class_logs.py"


def log(d: Path, name: str, text: bytes, age: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(text)
    t = 2_000_000_000 - age
    os.utime(d / name, (t, t))


def run(top: Path, *names: str) -> dict:
    r = subprocess.run([sys.executable, "-", str(top), *names], input=HELPER.read_bytes(), capture_output=True,
                       check=True, timeout=30)
    assert r.stdout.isascii()
    return json.loads(r.stdout)


def test_the_newest_log_is_found_and_nothing_followed_or_waited_on(tmp_path: Path) -> None:
    top = tmp_path / "class"
    one = top / "learner01"
    log(one / "course/.snakemake/log", "a.snakemake.log", b"Error in rule old:\n", age=100)
    log(one / "labs/core1-logs/.snakemake/log", "b.snakemake.log", b"\xff\xfe\nError in rule new:\n", age=10)
    log(one / "elsewhere/.snakemake/log", "c.snakemake.log", b"Error in rule hidden:\n", age=1)  # not a workdir
    two = top / "learner02"
    (two / "course/.snakemake").mkdir(parents=True)
    (two / "course/.snakemake/log").symlink_to(one / "course/.snakemake/log")  # another's logs, by a link
    three = top / "learner03"
    log(three / "course/.snakemake/log", "a.snakemake.log", b"WorkflowError: real\n", age=50)
    os.mkfifo(three / "course/.snakemake/log/z.snakemake.log")  # newer, but a pipe
    (three / "course/.snakemake/log/y.snakemake.log").symlink_to("/etc/passwd")
    four = top / "learner04"
    four.mkdir()
    (four / "course").symlink_to("/etc")
    found = run(top, "learner01", "learner02", "learner03", "learner04", "learner05")
    assert sorted(found) == ["learner01", "learner03"]
    assert found["learner01"]["log"] == "labs/core1-logs/.snakemake/log/b.snakemake.log"
    assert classroom.first_error(found["learner01"]["tail"]) == "Error in rule new:"
    assert found["learner03"] == {"log": "course/.snakemake/log/a.snakemake.log", "tail": "WorkflowError: real\n"}


class Fake:
    """A cluster client whose login node answers squeue, sacct and the helper from canned text."""

    def __init__(self, tmp_path: Path, answers: dict[str, str]) -> None:
        self.facts = Facts(nodes=["c1"], cpus=2, mem_mb=3000, scratch_mb=512)
        self.answers = answers

    def root(self, script: str, node: str | None = None, timeout: float = 0) -> Result:
        return self.sh(script)

    def sh(self, script: str, node: str | None = None, user: str | None = None, workdir: str | None = None,
           timeout: float = 0, stdin: bytes | None = None) -> Result:
        word = script.split()[0]
        return Result(script, 0, self.answers[word], 0.1)


def test_the_table_counts_what_squeue_sacct_and_the_records_say(tmp_path: Path) -> None:
    run_dir, proofs = tmp_path / "run", tmp_path / "proof"
    (run_dir / "etc").mkdir(parents=True)
    classroom._write(run_dir, [classroom.Learner("learner01", 2001, "k", "2026-12-07T10:00:00"),
                               classroom.Learner("learner02", 2002, "k", "2026-12-07T11:00:00")], [])
    (proofs / "class/learner01").mkdir(parents=True)
    classroom.proven_file(proofs, "learner01").write_text(json.dumps(
        {"core1": {"ok": True}, "core4": {"ok": False}}))
    answers = {
        "squeue": "learner01|RUNNING|None\nlearner01|PENDING|Priority\nlearner01|PENDING|Resources\n"
                  "learner01|PENDING|Priority\nlearner02|PENDING|JobHeldUser\nalice|RUNNING|None\n",
        # learner02's first job is an earlier learner02's (before this one joined); a | in no field breaks it.
        "sacct": "learner01|COMPLETED|2026-12-07T10:05:00\nlearner01|FAILED|2026-12-07T10:06:00\n"
                 "learner01|CANCELLED by 0|2026-12-07T10:07:00\nlearner02|COMPLETED|2026-12-07T09:00:00\n"
                 "learner02|COMPLETED|2026-12-07T11:30:00\n\nodd\n",
        "python3": json.dumps({"learner01": {"log": "course/.snakemake/log/x", "tail": "Error in rule boom:\n"}}),
    }
    rows = {r["name"]: r for r in classroom.status(Fake(tmp_path, answers), proofs, run_dir)}  # type: ignore[arg-type]
    assert rows["learner01"] == {"name": "learner01", "running": "1", "pending": "3 (Priority, Resources)",
                                 "finished": "3 (2 not ok)", "proven": "core1", "failing": "core4",
                                 "error": "Error in rule boom:"}
    assert rows["learner02"] == {"name": "learner02", "running": "0", "pending": "1 (JobHeldUser)",
                                 "finished": "1", "proven": "-", "failing": "-", "error": "(no run yet)"}


def test_a_helper_that_says_nothing_useful_is_an_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "etc").mkdir(parents=True)
    classroom._write(run_dir, [classroom.Learner("learner01", 2001, "k", "")], [])
    fake = Fake(tmp_path, {"squeue": "", "sacct": "", "python3": "Traceback ..."})
    with pytest.raises(classroom.MinihpcError, match="reading the learners' logs failed"):
        classroom.status(fake, tmp_path / "proof", run_dir)  # type: ignore[arg-type]
