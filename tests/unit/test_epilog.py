"""cluster/epilog.py: which of a user's processes a job's epilog spares.
(What it kills, on real nodes: tests/cluster/test_limits.py, test_isolation.py.)"""

import importlib.util
import os
import subprocess
from pathlib import Path

_spec = importlib.util.spec_from_file_location("epilog", Path(__file__).resolve().parents[2] / "cluster/epilog.py")
epilog = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(epilog)

USER = 1000
# pid: (owner uid, parent pid). 1 is slurmd, the container's init; 10 and 20
# are the slurmstepds of jobs 7 (ending) and 8 (starting on the node).
TABLE = {
    1: (0, 0),
    10: (0, 1), 11: (USER, 10), 12: (USER, 11),   # job 7's batch script and its child
    20: (0, 1), 21: (USER, 20), 22: (USER, 21),   # job 8's, not yet listed by slurmd
    30: (USER, 1),                                # a daemonised stray: re-parented to init
    40: (0, 1), 41: (USER, 40),                   # a root process that is not a slurmstepd
}
STEPDS = {10: "7", 20: "8"}


def stepd(pid: int) -> str | None:
    return STEPDS.get(pid)


def test_what_descends_from_another_jobs_slurmstepd_is_spared_and_nothing_else() -> None:
    spared = {p for p in TABLE if epilog.another_jobs(p, "7", TABLE, stepd)}
    assert spared == {20, 21, 22}
    # Seen from job 8's epilog, job 7's processes are the other job's.
    assert {p for p in TABLE if epilog.another_jobs(p, "8", TABLE, stepd)} == {10, 11, 12}


def test_a_cycle_or_a_vanished_parent_ends_the_walk() -> None:
    assert not epilog.another_jobs(5, "7", {5: (USER, 6), 6: (USER, 5)}, stepd)
    assert not epilog.another_jobs(5, "7", {5: (USER, 99)}, stepd)


def test_only_a_slurmstepd_command_line_names_a_job(tmp_path, monkeypatch) -> None:
    import builtins
    lines = {"/proc/1/cmdline": b"slurmstepd: [581.batch]\0", "/proc/2/cmdline": b"slurmstepd: [9.extern]\0",
             "/proc/3/cmdline": b"slurmd\0-D\0", "/proc/4/cmdline": b"sleep\0slurmstepd: [5.batch]\0"}
    real = builtins.open

    def fake(path, *a, **k):
        if str(path) in lines:
            f = tmp_path / Path(path).parent.name
            f.write_bytes(lines[str(path)])
            return real(f, *a, **k)
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real(path, *a, **k)
    monkeypatch.setattr(builtins, "open", fake)
    assert [epilog.stepd_job(p) for p in (1, 2, 3, 4, 5)] == ["581", "9", None, None, None]


def test_without_slurmds_list_the_process_table_says_whether_another_job_runs() -> None:
    # Job 7 ends while job 8 (the user's) runs: another job is here.
    assert epilog.runs_another_job(USER, "7", TABLE, stepd)
    # Only job 7 was here (its stepd and the stray left): none other, everything of the user's may go.
    alone = {p: v for p, v in TABLE.items() if p not in (20, 21, 22)}
    assert not epilog.runs_another_job(USER, "7", alone, stepd)
    # Another user's job is not the user's.
    assert not epilog.runs_another_job(USER + 1, "7", TABLE, stepd)


def test_a_process_is_its_real_uids_not_the_effective_one_proc_shows() -> None:
    # slurmstepd of another job, root, for a moment with the user's effective uid (to open their
    # files): /proc's owner then reads 1000, and its parent is init (it is daemonised).
    stepd_status = "Name:\tslurmstepd\nPPid:\t1\nUid:\t0\t1000\t0\t1000\nGid:\t0\t1000\t0\t1000\n"
    assert epilog.status(stepd_status) == (0, 1)
    table = {**TABLE, 50: epilog.status(stepd_status)}
    # Root: never a target of the user's epilog, and what it starts is another job's.
    assert table[50][0] != USER
    assert epilog.another_jobs(51, "7", {**table, 51: (USER, 50)}, {**STEPDS, 50: "9"}.get)
    # A setuid program the user ran is theirs (real uid), whatever its effective uid.
    assert epilog.status("PPid:\t30\nUid:\t1000\t0\t0\t0\n") == (USER, 30)


def test_proc_status_reads_a_live_process_and_none_once_it_is_gone() -> None:
    assert epilog.proc_status(os.getpid()) == (os.getuid(), os.getppid())
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert epilog.proc_status(gone.pid) is None
