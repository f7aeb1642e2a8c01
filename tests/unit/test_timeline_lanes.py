"""How minihpc.timeline places jobs on a node's CPU lanes (no cluster needed)."""

from __future__ import annotations

from minihpc.timeline import Bar, assign_lanes


def bar(job: str, node: str, start: float, end: float | None, cpus: int = 1) -> Bar:
    return Bar(job, "student", "r", node, cpus, submit=0.0, start=start, end=end, state="COMPLETED")


def test_overlapping_jobs_get_their_own_lanes_and_a_freed_lane_is_reused() -> None:
    a, b, c = bar("1", "c1", 0, 10), bar("2", "c1", 1, 5), bar("3", "c1", 5, 9)
    assign_lanes([c, b, a], cpus=2)
    assert (a.lanes, b.lanes) == ([0], [1])
    # Freed in the second it starts (sacct's whole seconds): the same lane.
    assert c.lanes == [1]


def test_a_job_with_several_cpus_takes_as_many_lanes_and_nodes_are_apart() -> None:
    wide, other_node, later = bar("1", "c1", 0, 10, cpus=2), bar("2", "c2", 0, 10), bar("3", "c1", 3, 4)
    assign_lanes([wide, other_node, later], cpus=2)
    assert wide.lanes == [0, 1] and other_node.lanes == [0]
    # No lane free (more jobs than CPUs in one sacct second): the soonest freed, never none.
    assert len(later.lanes) == 1


def test_a_running_job_holds_its_lane_and_a_pending_one_gets_none() -> None:
    running, pending, after = bar("1", "c1", 0, None), bar("2", "c1", None, None), bar("3", "c1", 50, 60)
    pending.start = None
    assign_lanes([running, pending, after], cpus=2)
    assert running.lanes == [0] and pending.lanes == [] and after.lanes == [1]
