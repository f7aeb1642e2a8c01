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


def test_a_node_the_host_cannot_hold_is_refused_and_more_than_it_has_together_is_said(capsys) -> None:
    from minihpc.errors import BadInput
    from minihpc.topology import Topology
    bringup.check_memory(Topology.from_env({}), host_mb=24000)  # 3000 + 6000
    assert capsys.readouterr().err == ""
    with pytest.raises(BadInput, match=r"a node of 15200 MiB does not fit this host \(12000 MiB of memory\).*"
                                       r"give BIGMEM_MB at most 12000 \(unless given, it is twice NODE_MEM_MB\)"):
        bringup.check_memory(Topology.from_env({"NODE_MEM_MB": "7600"}), host_mb=12000)
    with pytest.raises(BadInput, match="give NODE_MEM_MB below 8000 and BIGMEM_MB at most 8000"):
        bringup.check_memory(Topology.from_env({"NODE_MEM_MB": "9000", "BIGMEM_MB": "9500"}), host_mb=8000)
    bringup.check_memory(Topology.from_env({"NODES": "4", "NODE_MEM_MB": "7200", "BIGMEM_MB": "7300"}),
                         host_mb=24000)
    assert "the nodes declare 28900 MiB together, this host has 24000 MiB" in capsys.readouterr().err


def test_the_hosts_memory_is_read_from_meminfo(tmp_path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:       24683772 kB\nMemFree: 1 kB\n")
    assert bringup.host_memory_mb(tmp_path / "meminfo") == 24105
    assert bringup.host_memory_mb(tmp_path / "absent") is None


@pytest.mark.parametrize(("slurm", "before", "changed", "did"), [
    ("22.05", ["c1", "c2"], True, ["sinfo -h -N -o %N", "compose restart slurmctld", "healthy slurmctld",
                                   "scontrol reconfigure"]),
    # An up that failed half-way left the files rendered: the controller still has two nodes.
    ("22.05", ["c1", "c2"], False, ["sinfo -h -N -o %N", "compose restart slurmctld", "healthy slurmctld",
                                    "scontrol reconfigure"]),
    ("22.05", ["c1", "c2", "c3"], True, ["sinfo -h -N -o %N", "scontrol reconfigure"]),  # the same nodes
    ("22.05", ["c1", "c2", "c3"], False, ["sinfo -h -N -o %N"]),
    ("24.11", ["c1", "c2"], True, ["scontrol reconfigure"])])
def test_a_release_that_cannot_resize_by_reconfigure_restarts_its_controller(
        monkeypatch: pytest.MonkeyPatch, slurm: str, before: list[str], changed: bool, did: list[str]) -> None:
    from minihpc import releases
    done: list[str] = []
    monkeypatch.setattr(bringup, "_compose", lambda *a, **k: done.append("compose " + " ".join(a)))
    # sinfo -N lists a node once per partition it is in.
    monkeypatch.setattr(bringup, "_exec", lambda service, *argv: done.append(" ".join(argv)) or
                        "\n".join(n for n in before for _ in range(2)))
    monkeypatch.setattr(bringup.ready, "wait_healthy", lambda services, timeout: done.append("healthy " + services[0]))
    state = bringup.State(bringup.Plan(Topology.from_env({"NODES": "3"}), release=releases.named(slurm)),
                          was_running=True, changed=changed)
    bringup.reconfigure(state)
    assert done == did
