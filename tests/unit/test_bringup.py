"""minihpc up's steps: in order, each saying what it did, and a failing one
naming itself, what it was doing and what to do, with no later step run."""

from __future__ import annotations

import pytest

from minihpc import bringup
from minihpc.errors import MinihpcError
from minihpc.topology import Topology


def test_the_steps_are_the_documented_order() -> None:
    assert [s.name for s in bringup.STEPS] == ["engine", "base image", "secrets", "configs", "images", "containers",
                                               "reconfigure", "ready", "accounting", "nfs profile"]
    assert all(s.does for s in bringup.STEPS)


def test_a_failing_step_names_itself_and_nothing_after_it_runs(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[str] = []

    def ok(name: str):
        def act(s: bringup.State) -> str:
            ran.append(name)
            return f"{name} done"
        return act

    def broken(s: bringup.State) -> None:
        ran.append("images")
        raise bringup._Failed("docker compose build exited 17 (its lines above say why)")

    steps = [bringup.Step("configs", "render the files", ok("configs")),
             bringup.Step("images", "build the images", broken),
             bringup.Step("containers", "start them", ok("containers"))]
    monkeypatch.setattr(bringup, "STEPS", steps)
    with pytest.raises(MinihpcError) as e:
        bringup.run(bringup.Plan(Topology.from_env({})))
    assert ran == ["configs", "images"]
    assert str(e.value) == ("bring-up step 'images' (build the images) failed: docker compose build exited 17 "
                            "(its lines above say why); see the lines above; minihpc logs shows every service")
    assert "cluster-up: configs done" in capsys.readouterr().err


def test_a_step_may_give_its_own_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(s: bringup.State) -> None:
        raise bringup._Failed("not ready after 180 s: c1 (starting)", "raise the limit with minihpc up --timeout")
    monkeypatch.setattr(bringup, "STEPS", [bringup.Step("ready", "wait", slow)])
    with pytest.raises(MinihpcError, match=r"step 'ready' \(wait\) failed: not ready after 180 s: c1 \(starting\); "
                                           r"raise the limit with minihpc up --timeout$"):
        bringup.run(bringup.Plan(Topology.from_env({})))
