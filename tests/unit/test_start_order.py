"""make test's side-by-side phase: the order xdist hands the groups out in
(tests/conftest.py start_order), and the group each test is in."""

from scheduling import group_of, start_order


def test_the_costliest_start_then_the_cheapest_follow_then_the_rest_by_cost() -> None:
    cost = {"site-check": 370, "core6": 340, "pyenv": 215, "eio": 150, "tiny": 5, "small": 10, "mid": 70, "run": 190}
    order = start_order(cost, workers=3)
    assert order[:3] == ["site-check", "core6", "pyenv"]
    # xdist's second unit per worker: the three cheapest, cheapest first; then the rest, costliest first.
    assert order[3:6] == ["tiny", "small", "mid"]
    assert order[6:] == ["run", "eio"]
    assert sorted(order) == sorted(cost)


def test_fewer_groups_than_workers() -> None:
    assert start_order({"a": 3, "b": 9}, workers=5) == ["b", "a"]


def test_a_test_goes_to_its_own_group_by_its_id_then_by_its_function_else_to_its_files() -> None:
    demos = "tests/cluster/test_lab.py::test_instructor_demo"
    assert group_of(f"{demos}[demo-prefix-mismatch]") == "site-check"
    assert group_of("tests/cluster/test_sitecheck.py::test_the_site_check_passes_over_ssh_alone") == "site-check"
    assert group_of(f"{demos}[demo-oom]") == "tests/cluster/test_lab.py"
    assert group_of("tests/cluster/test_lab.py::test_resources_side_by_side[core6]") == "lab-side-by-side"
