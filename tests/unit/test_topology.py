"""slurm.conf and the compose topology come from the same values."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from minihpc import configs, topology
from minihpc.facts import Facts

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_conf_and_compose_agree(tmp_path: Path, n: int) -> None:
    t = topology.Topology.from_env({"NODES": str(n)})
    configs.render(t, tmp_path, ROOT / "docker-compose.yml")
    conf = (tmp_path / "etc/slurm.conf").read_text()
    services = json.loads((tmp_path / "compose.nodes.yml").read_text())["services"]
    compute = sorted(set(services) - {"login", *topology.SERVICE_HOSTS}, key=lambda s: int(s[1:]))
    assert compute == [f"c{i}" for i in range(1, n + 1)]
    assert all(services[name]["hostname"] == name for name in compute)
    # Every node standard but the last (bigmem); the first carries the GPUs.
    shapes = [line for line in conf.splitlines() if line.startswith("NodeName=")]
    assert len(shapes) == n
    for i, line in enumerate(shapes, 1):
        mem = 6000 if i == n else 3000
        gres = " Gres=gpu:2" if i == 1 else ""
        # slurmctld reaches each node at the address Compose gives it, never by a DNS lookup.
        addr = services[f"c{i}"]["networks"]["default"]["ipv4_address"]
        assert line == f"NodeName=c{i} NodeAddr={addr} CPUs=2 RealMemory={mem} TmpDisk=512{gres} State=UNKNOWN"
        assert services[f"c{i}"]["mem_limit"] == f"{mem + configs.CONTAINER_HEADROOM_MB}m"


def test_every_node_has_its_own_scratch_of_the_declared_size(tmp_path: Path) -> None:
    t = topology.Topology.from_env({"NODES": "3", "SCRATCH_MB": "64"})
    configs.render(t, tmp_path, ROOT / "docker-compose.yml")
    conf = (tmp_path / "etc/slurm.conf").read_text()
    services = json.loads((tmp_path / "compose.nodes.yml").read_text())["services"]
    assert sorted(n for n, s in services.items() if "tmpfs" in s) == ["c1", "c2", "c3", "login"]
    # A tmpfs per container: private to the node, limited to SCRATCH_MB.
    assert all(s["tmpfs"] == ["/scratch:size=64m,mode=755"] for s in services.values() if "tmpfs" in s)
    assert "TmpFS=/scratch\n" in conf and " TmpDisk=64 " in conf
    # What each node makes and checks on every start (Docker drops mode= on a restart),
    # and the health check that drains a node whose scratch is not this.
    assert (tmp_path / "etc/scratch.env").read_text() == "SCRATCH=/scratch\nSCRATCH_MB=64\nSCRATCH_MODE=755\n"
    assert "HealthCheckProgram=/usr/local/sbin/minihpc-nodecheck\n" in conf
    # Root makes each job's scratch directory before it starts (the image installs that Prolog).
    assert "Prolog=/usr/local/sbin/minihpc-scratchdir\n" in conf
    dockerfile = (ROOT / "cluster/Dockerfile").read_text()
    assert "COPY cluster/scratchdir.py /usr/local/sbin/minihpc-scratchdir\n" in dockerfile


def test_the_throughput_tuning_is_in_the_tuned_file_only() -> None:
    t = topology.Topology.from_env({})
    tuned, untuned = configs.slurm_conf(t), configs.slurm_conf(t, tuned=False)
    # The epilog the image installs (cluster/Dockerfile) is the one slurm.conf names.
    dockerfile = (ROOT / "cluster/Dockerfile").read_text()
    assert f"COPY cluster/epilog.py {configs.THROUGHPUT['Epilog']}\n" in dockerfile
    for key, value in configs.THROUGHPUT.items():
        assert f"\n{key}={value}\n" in tuned
        assert f"\n{key}=" not in untuned


def test_render_reports_change_only_when_values_change(tmp_path: Path) -> None:
    compose = ROOT / "docker-compose.yml"
    two = topology.Topology.from_env({"NODES": "2"})
    assert configs.render(two, tmp_path, compose) is True
    assert configs.render(two, tmp_path, compose) is False
    assert configs.render(topology.Topology.from_env({"NODES": "3"}), tmp_path, compose) is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NODES": "0"}, "NODES=0 is out of range; allowed 1 to 16"),
        ({"NODES": "17"}, "NODES=17 is out of range; allowed 1 to 16"),
        ({"NODES": "two"}, "NODES='two' is not a whole number; use e.g. NODES=2"),
        ({"NODE_MEM_MB": "1000"}, "NODE_MEM_MB=1000 is out of range; allowed 2048"),
        ({"SCRATCH_MB": "8"}, "SCRATCH_MB=8 is out of range; allowed 16 to 65536"),
        ({"BIGMEM_MB": "3000"}, "BIGMEM_MB=3000 is not above NODE_MEM_MB=3000; the bigmem node must have more"),
        ({"GPUS": "-1"}, "GPUS=-1 is out of range; allowed 0 to 16"),
        ({"SUBNET": "10.1.2.3/24"}, "SUBNET='10.1.2.3/24' is not an IPv4 network with its host bits zero"),
        ({"SUBNET": "8.8.8.0/24"}, "SUBNET=8.8.8.0/24 must be a private .RFC 1918. IPv4 network of at least 28"),
        ({"SUBNET": "10.1.2.0/28"}, "SUBNET=10.1.2.0/28 must be a private .*a /27 or larger"),
        ({"SUBNET": "fd00::/64"}, "SUBNET=fd00::/64 must be a private .RFC 1918. IPv4 network"),
    ],
)
def test_bad_sizes_are_refused_with_the_fix(env: dict[str, str], message: str) -> None:
    with pytest.raises(topology.TopologyError, match=message):
        topology.Topology.from_env(env)


def test_up_refuses_before_writing(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "minihpc", "up"],
        env={"NODES": "99", "PATH": "/usr/bin:/bin", "MINIHPC_STATE_DIR": str(tmp_path)},
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert r.returncode == 2, r.stderr
    assert "minihpc: error: NODES=99 is out of range; allowed 1 to 16" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_render_writes_the_facts_every_consumer_reads(tmp_path: Path) -> None:
    t = topology.Topology.from_env({"NODES": "3", "NODE_CPUS": "4", "NODE_MEM_MB": "4096", "SCRATCH_MB": "64"})
    configs.render(t, tmp_path, ROOT / "docker-compose.yml")
    f = Facts.read(tmp_path)
    assert (f.nodes, f.cpus, f.mem_mb, f.scratch_mb) == (["c1", "c2", "c3"], 4, 4096, 64)
    assert f.slurm_services == ["slurmdbd", "slurmctld", "restd", "login", "c1", "c2", "c3"]


@pytest.mark.parametrize("subnet", ["10.213.0.0/24", "192.168.77.0/27", "172.30.0.0/16"])
def test_every_service_has_a_fixed_address_of_its_own_in_the_subnet(tmp_path: Path, subnet: str) -> None:
    """A node cut off or killed comes back at its own address, never at one
    Docker freed from another node (where slurmctld would send that node's jobs)."""
    t = topology.Topology.from_env({"NODES": "16", "SUBNET": subnet})
    configs.render(t, tmp_path, ROOT / "docker-compose.yml")
    nodes = json.loads((tmp_path / "compose.nodes.yml").read_text())
    net = ipaddress.ip_network(subnet)
    assert nodes["networks"]["default"]["ipam"]["config"] == [{"subnet": subnet, "gateway": str(net[1])}]
    given = {name: s["networks"]["default"]["ipv4_address"] for name, s in nodes["services"].items()}
    assert sorted(given) == sorted(["db", "slurmdbd", "slurmctld", "restd", "login", *t.names])
    assert len(set(given.values())) == len(given), "one address each"
    assert all(ipaddress.ip_address(a) in net and a not in (str(net[0]), str(net[1]), str(net[-1]))
               for a in given.values())
    assert Facts.read(tmp_path).addresses == given and Facts.read(tmp_path).subnet == subnet
    # Resizing keeps every address: c1 stays where it was.
    assert topology.Topology.from_env({"NODES": "2", "SUBNET": subnet}).addresses["c1"] == given["c1"]


def test_the_image_creates_the_users_the_facts_name() -> None:
    """The image is the producer; every other consumer reads Facts."""
    f = Facts(nodes=[], cpus=1, mem_mb=1, scratch_mb=1)
    dockerfile = (ROOT / "cluster/Dockerfile").read_text()
    assert f"ARG LAB_USER={f.lab_user}\n" in dockerfile and f"ARG LAB_UID={f.lab_uid}\n" in dockerfile
    assert f"ARG OTHER_USER={f.other_user}\n" in dockerfile and f"ARG OTHER_UID={f.other_uid}\n" in dockerfile


def test_the_site_shape_comes_from_the_same_values(tmp_path: Path) -> None:
    t = topology.Topology.from_env({"NODES": "3", "NODE_MEM_MB": "4096", "BIGMEM_MB": "9000", "GPUS": "4"})
    configs.render(t, tmp_path, ROOT / "docker-compose.yml")
    etc = tmp_path / "etc"
    conf = (etc / "slurm.conf").read_text()
    parts = {line.split()[0].split("=")[1]: line for line in conf.splitlines() if line.startswith("PartitionName=")}
    assert list(parts) == ["short", "long", "bigmem", "gpu"]
    assert "Nodes=c1,c2,c3 Default=YES DefaultTime=01:00:00 MaxTime=04:00:00 MaxMemPerNode=4096" in parts["short"]
    assert "Nodes=c1,c2,c3 Default=NO" in parts["long"] and "MaxTime=7-00:00:00 MaxMemPerNode=4096" in parts["long"]
    # bigmem: only the big node, and no cap below its memory.
    assert "Nodes=c3 " in parts["bigmem"] and "MaxMemPerNode" not in parts["bigmem"]
    assert "Nodes=c1 " in parts["gpu"]
    gres = [line for line in (etc / "gres.conf").read_text().splitlines() if not line.startswith("#")]
    assert gres == [f"NodeName=c1 Name=gpu File=/dev/minihpc-gpu{i}" for i in range(4)]
    c3 = next(x for x in conf.splitlines() if x.startswith("NodeName=c3 "))
    assert " CPUs=2 RealMemory=9000 " in c3 and "DefMemPerCPU=2048\n" in conf
    assert "PriorityType=priority/multifactor\n" in conf
    assert "AccountingStorageEnforce=associations,limits,qos\n" in conf
    f = Facts.read(tmp_path)
    assert (f.node_mem_mb, f.gpus, f.partitions) == ({"c1": 4096, "c2": 4096, "c3": 9000}, {"c1": 4},
                                                     ["short", "long", "bigmem", "gpu"])
    acct = json.loads((etc / "accounting.json").read_text())
    tree = {a["name"]: a["parent"] for a in acct["accounts"]}
    assert tree == {"teaching": "root", f.lab_account: "teaching", "research": "root", f.other_account: "research"}
    assert {u["name"]: u["account"] for u in acct["users"]} == {f.lab_user: f.lab_account,
                                                               f.other_user: f.other_account}
    assert [q["name"] for q in acct["qos"]] == ["normal", "debug", "high"]
    # The bought priority is the other group's alone.
    assert {u["name"]: u["qos"] for u in acct["users"]} == {f.lab_user: ["normal", "debug"],
                                                           f.other_user: ["normal", "debug", "high"]}


def test_without_gpus_there_is_no_gpu_partition(tmp_path: Path) -> None:
    t = topology.Topology.from_env({"NODES": "1", "GPUS": "0"})
    configs.render(t, tmp_path, ROOT / "docker-compose.yml")
    conf = (tmp_path / "etc/slurm.conf").read_text()
    assert "PartitionName=gpu" not in conf and "Gres=" not in conf
    # One node is both the standard and the bigmem node.
    c1 = next(x for x in conf.splitlines() if x.startswith("NodeName=c1 "))
    assert " CPUs=2 RealMemory=6000 " in c1 and "PartitionName=bigmem Nodes=c1 " in conf


def test_the_bigmem_node_follows_the_node_memory_unless_given() -> None:
    """NODE_MEM_MB=7600 alone is a working cluster: the bigmem node gets twice
    that. Given, BIGMEM_MB is checked as before."""
    t = topology.Topology.from_env({"NODE_MEM_MB": "7600"})
    assert (t.mem_mb, t.bigmem_mb) == (7600, 15200)
    assert topology.Topology.from_env({}).bigmem_mb == topology.DEFAULTS["BIGMEM_MB"] == 6000
    assert topology.Topology.from_env({"NODE_MEM_MB": "7600", "BIGMEM_MB": "9000"}).bigmem_mb == 9000
    with pytest.raises(topology.TopologyError, match="BIGMEM_MB=7000 is not above NODE_MEM_MB=7600.*"
                                                     "or leave it out: twice NODE_MEM_MB"):
        topology.Topology.from_env({"NODE_MEM_MB": "7600", "BIGMEM_MB": "7000"})
    assert topology.Topology.from_env({"NODE_MEM_MB": str(topology.MAX_MEM_MB - 1)}).bigmem_mb == topology.MAX_MEM_MB
