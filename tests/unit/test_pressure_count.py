"""How the pressure proof counts the CPUs held at once, from sacct rows (no cluster needed)."""

from __future__ import annotations

from minihpc.course.pressure import most_cpus_at_once


def row(start: str, end: str, cpus: int = 1) -> dict[str, str]:
    return {"Start": f"2026-11-29T10:00:{start}", "End": f"2026-11-29T10:00:{end}", "AllocCPUS": str(cpus)}


def test_overlapping_jobs_add_up_and_a_job_ending_as_another_starts_does_not() -> None:
    rows = [row("00", "10"), row("00", "05", cpus=2), row("05", "09"), row("09", "12")]
    # 0-5: 1 + 2; at 5 the 2-CPU job ends as the next starts: 1 + 1; at 9 one ends, one starts.
    assert most_cpus_at_once(rows) == 3


def test_jobs_that_never_started_or_ended_hold_nothing() -> None:
    rows = [row("00", "10"), {"Start": "Unknown", "End": "Unknown", "AllocCPUS": "4"},
            {"Start": "2026-11-29T10:00:01", "End": "Unknown", "AllocCPUS": "4"}]
    assert most_cpus_at_once(rows) == 1
