"""slurm.conf and the compose topology come from the same values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minihpc import topology
from minihpc.facts import Facts

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_conf_and_compose_agree(tmp_path: Path, n: int) -> None:
    t = topology.Topology.from_env({"NODES": str(n)})
    topology.render(t, tmp_path, ROOT / "docker-compose.yml")
    conf = (tmp_path / "etc/slurm.conf").read_text()
    services = json.loads((tmp_path / "compose.nodes.yml").read_text())["services"]
    compute = sorted(set(services) - {"login"}, key=lambda s: int(s[1:]))
    assert compute == [f"c{i}" for i in range(1, n + 1)]
    assert all(services[name]["hostname"] == name for name in compute)
    expected = "c1" if n == 1 else f"c[1-{n}]"
    assert f"NodeName={expected} CPUs=2 RealMemory=3000 TmpDisk=512 " in conf


def test_every_node_has_its_own_scratch_of_the_declared_size(tmp_path: Path) -> None:
    t = topology.Topology.from_env({"NODES": "3", "SCRATCH_MB": "64"})
    topology.render(t, tmp_path, ROOT / "docker-compose.yml")
    conf = (tmp_path / "etc/slurm.conf").read_text()
    services = json.loads((tmp_path / "compose.nodes.yml").read_text())["services"]
    assert sorted(services) == ["c1", "c2", "c3", "login"]
    # A tmpfs per container: private to the node, limited to SCRATCH_MB.
    assert all(s["tmpfs"] == ["/scratch:size=64m,mode=1777"] for s in services.values())
    assert "TmpFS=/scratch\n" in conf and " TmpDisk=64 " in conf


def test_render_reports_change_only_when_values_change(tmp_path: Path) -> None:
    compose = ROOT / "docker-compose.yml"
    two = topology.Topology.from_env({"NODES": "2"})
    assert topology.render(two, tmp_path, compose) is True
    assert topology.render(two, tmp_path, compose) is False
    assert topology.render(topology.Topology.from_env({"NODES": "3"}), tmp_path, compose) is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NODES": "0"}, "NODES=0 is out of range; allowed 1 to 16"),
        ({"NODES": "17"}, "NODES=17 is out of range; allowed 1 to 16"),
        ({"NODES": "two"}, "NODES='two' is not a whole number; use e.g. NODES=2"),
        ({"NODE_MEM_MB": "1000"}, "NODE_MEM_MB=1000 is out of range; allowed 2048"),
        ({"SCRATCH_MB": "8"}, "SCRATCH_MB=8 is out of range; allowed 16 to 65536"),
    ],
)
def test_bad_sizes_are_refused_with_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(topology.TopologyError, match=message.replace("[", r"\[")):
        topology.Topology.from_env(env)


def test_cli_refuses_before_writing(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "minihpc.topology", "--run-dir", str(tmp_path),
         "--compose-file", str(ROOT / "docker-compose.yml")],
        env={"NODES": "99", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert r.returncode == 2
    assert "topology: error: NODES=99 is out of range; allowed 1 to 16" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_render_writes_the_facts_every_consumer_reads(tmp_path: Path) -> None:
    t = topology.Topology.from_env({"NODES": "3", "NODE_CPUS": "4", "NODE_MEM_MB": "4096", "SCRATCH_MB": "64"})
    topology.render(t, tmp_path, ROOT / "docker-compose.yml")
    f = Facts.read(tmp_path)
    assert (f.nodes, f.cpus, f.mem_mb, f.scratch_mb) == (["c1", "c2", "c3"], 4, 4096, 64)
    assert f.slurm_services == ["slurmdbd", "slurmctld", "login", "c1", "c2", "c3"]


def test_the_image_creates_the_lab_user_the_facts_name() -> None:
    """The image and Compose are the producers; every other consumer reads Facts."""
    f = Facts(nodes=[], cpus=1, mem_mb=1, scratch_mb=1)
    dockerfile = (ROOT / "cluster/Dockerfile").read_text()
    assert f"ARG LAB_USER={f.lab_user}\n" in dockerfile and f"ARG LAB_UID={f.lab_uid}\n" in dockerfile
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"LAB_USER: {f.lab_user}\n" in compose and f"LAB_ACCOUNT: {f.lab_account}\n" in compose
