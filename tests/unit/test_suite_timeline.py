"""bench/suite.py: a test's time split into job running, queued, plugin
polling and no job, from the run's Slurm jobs."""

import sys
from pathlib import Path

from bench import suite


def stamp(t: float) -> str:
    from datetime import datetime
    return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


T0 = 1_790_000_000.0


def job(submit: float, start: float | None, end: float | None, workdir: str = "/shared/a",
        state: str = "COMPLETED") -> dict:
    return {"Submit": stamp(T0 + submit), "Start": stamp(T0 + start) if start is not None else "Unknown",
            "End": stamp(T0 + end) if end is not None else "Unknown", "WorkDir": workdir, "State": state}


def test_union_and_minus() -> None:
    assert suite.union([(5, 7), (0, 2), (1, 3), (7, 8)]) == [(0, 3), (5, 8)]
    assert suite.minus([(0, 10)], [(2, 3), (5, 6)]) == [(0, 2), (3, 5), (6, 10)]
    assert suite.minus([(0, 2), (4, 6)], [(1, 5)]) == [(0, 1), (5, 6)]


def test_a_chain_of_two_jobs_splits_into_queued_running_polling_and_no_job() -> None:
    # Job 1 queued 2 s, runs 5 s, ends at 7; the plugin notices and job 2 is
    # submitted at 17; it starts at 18 and ends at 20. The test ran 0..25.
    layers = suite.job_spans([job(0, 2, 7), job(17, 18, 20)], 0.0)
    parts = suite.split((T0, T0 + 25), layers)
    assert parts == {"job running": 7.0, "SLURM timer": 0.0, "job queued": 3.0, "plugin polling": 10.0,
                     "no job": 5.0}


def test_jobs_of_other_directories_and_running_jobs_are_not_polling() -> None:
    # Directory b's job runs 5..15, over a's polling gap 7..17: that part is running.
    layers = suite.job_spans([job(0, 0, 7), job(17, 17, 20), job(5, 5, 15, "/shared/b")], 0.0)
    parts = suite.split((T0, T0 + 20), layers)
    assert parts["job running"] == 18.0 and parts["plugin polling"] == 2.0 and parts["no job"] == 0.0


def test_a_job_cancelled_while_pending_counts_as_queued() -> None:
    layers = suite.job_spans([job(0, None, 4)], 0.0)
    assert suite.split((T0, T0 + 6), layers) == {"job running": 0.0, "SLURM timer": 0.0, "job queued": 4.0,
                                                   "plugin polling": 0.0, "no job": 2.0}


def test_a_job_that_ends_by_a_timer_is_the_timer_while_nothing_else_runs() -> None:
    # A TIMEOUT job runs 1..61 beside a completed one 0..10; a node's job lost 70..100 (NODE_FAIL).
    layers = suite.job_spans([job(0, 1, 61, "/shared/t", "TIMEOUT"), job(0, 0, 10, "/shared/w"),
                              job(70, 70, 100, "/shared/n", "NODE_FAIL")], 0.0)
    parts = suite.split((T0, T0 + 100), layers)
    assert parts == {"job running": 10.0, "SLURM timer": 81.0, "job queued": 0.0, "plugin polling": 0.0,
                     "no job": 9.0}


def test_a_gap_from_one_test_to_the_next_is_not_polling() -> None:
    # Two tests work in /tmp: 0..8 (its job ends at 7) and 12..25 (its job is submitted at 17).
    layers = suite.job_spans([job(0, 2, 7, "/tmp"), job(17, 18, 20, "/tmp")], 0.0, [(T0, T0 + 8), (T0 + 12, T0 + 25)])
    assert suite.split((T0, T0 + 25), layers)["plugin polling"] == 0.0
    within = suite.job_spans([job(0, 2, 7, "/tmp"), job(17, 18, 20, "/tmp")], 0.0, [(T0, T0 + 25)])
    assert suite.split((T0, T0 + 25), within)["plugin polling"] == 10.0


def test_a_name_that_is_not_plain_is_refused_before_anything_is_read(tmp_path) -> None:
    import subprocess
    r = subprocess.run([sys.executable, "-m", "bench.suite", "report", str(tmp_path), "--name", "../evil"],
                       capture_output=True, text=True, check=False, cwd=Path(suite.__file__).parent.parent)
    assert r.returncode == 2 and "--name '../evil' is not a plain name" in r.stderr, r.stderr
    assert not (Path(suite.__file__).parent / "evil.json").exists()


def test_cpu_busy_is_the_share_of_all_cores_between_the_samples_inside_the_window(tmp_path) -> None:
    # /proc/stat's cpu line: user nice system idle iowait irq softirq steal ...
    lines = ["100.0 cpu 1000 0 0 1000 0 0 0 0 0 0",
             "102.0 cpu 1300 0 100 1100 0 0 0 0 0 0",   # 400 busy of 500
             "104.0 cpu 1300 0 100 1500 100 0 0 0 0 0",  # idle and iowait: 0 busy of 500
             "not a sample"]
    (tmp_path / "cpu.txt").write_text("\n".join(lines) + "\n")
    busy = suite.cpu_busy(tmp_path)
    assert busy((100.0, 102.0)) == 0.8
    assert busy((100.0, 104.0)) == 0.4
    assert busy((101.0, 103.0)) is None, "fewer than two samples inside: unknown, not zero"
    assert suite.cpu_busy(tmp_path / "none")((0, 1e12)) is None
