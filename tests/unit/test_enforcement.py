"""`minihpc up --enforce` and `--def-mem-per-cpu`: parsed once, refused
with the fix, and rendered into slurm.conf as the limits a site enforces."""

from __future__ import annotations

import re

import pytest

from minihpc import configs
from minihpc.errors import BadInput
from minihpc.policy import Enforcement
from minihpc.topology import Topology


@pytest.mark.parametrize(("raw", "memory", "time"), [("", True, True), ("memory,time", True, True),
                                                     ("time", False, True), ("memory", True, False),
                                                     ("none", False, False), (" time , memory ", True, True)])
def test_what_is_enforced_is_named(raw: str, memory: bool, time: bool) -> None:
    e = Enforcement.from_env({"ENFORCE": raw})
    assert (e.memory, e.time) == (memory, time)


@pytest.mark.parametrize(("env", "message"), [
    ({"ENFORCE": "memory,cpu"}, "--enforce 'memory,cpu': 'cpu' is not something minihpc enforces; give a "
                                "comma-separated list of memory, time, or none (the default: memory,time)"),
    ({"ENFORCE": "memory,,time"}, "--enforce 'memory,,time': an empty or repeated name"),
    ({"ENFORCE": "time,time"}, "an empty or repeated name"),
    ({"ENFORCE": "None"}, "'None' is not something minihpc enforces"),
    ({"DEF_MEM_PER_CPU": "5"}, "--def-mem-per-cpu '5' is not a whole number of MiB from 100 to 1048576"),
    ({"DEF_MEM_PER_CPU": "1.5G"}, "--def-mem-per-cpu '1.5G' is not a whole number"),
])
def test_a_bad_value_is_refused_with_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(BadInput, match=re.escape(message)):
        Enforcement.from_env(env)


def test_slurm_conf_enforces_what_was_asked() -> None:
    t = Topology.from_env({})
    on = configs.slurm_conf(t).splitlines()
    assert "JobAcctGatherParams=OverMemoryKill" in on and "OverTimeLimit=0" in on and "DefMemPerCPU=1500" in on
    off = configs.slurm_conf(t, enforcement=Enforcement.from_env({"ENFORCE": "none", "DEF_MEM_PER_CPU": "700"}))
    lines = off.splitlines()
    assert not any(line.startswith("JobAcctGatherParams=") for line in lines)
    assert "OverTimeLimit=UNLIMITED" in lines and "DefMemPerCPU=700" in lines
    # Memory is still sampled for sacct (MaxRSS): only the kill goes.
    assert "JobAcctGatherType=jobacct_gather/linux" in lines


def test_the_facts_say_what_is_enforced() -> None:
    f = configs.facts(Topology.from_env({}), enforcement=Enforcement(memory=False, time=True))
    assert (f.enforce, f.def_mem_per_cpu) == (["time"], 1500)


def test_a_running_clusters_enforcement_is_read_back_from_its_facts() -> None:
    t = Topology.from_env({})
    for e in (Enforcement(), Enforcement(memory=False, time=False, def_mem_per_cpu=700), Enforcement(time=False)):
        back = Enforcement.from_facts(configs.facts(t, enforcement=e))
        assert back.conf(t) == e.conf(t) and back.names == e.names
