"""make test's side-by-side phase: the order xdist hands the groups out in
(tests/conftest.py start_order)."""

from scheduling import start_order


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
