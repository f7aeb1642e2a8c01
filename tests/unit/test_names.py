"""Clusters side by side on one machine: each named by MINIHPC_CLUSTER, with
its own state, Compose project, SSH port and subnet; a name that is no name,
and a port another holds, refused before anything starts."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from minihpc import bringup, configs
from minihpc.errors import BadInput
from minihpc.topology import Topology
from minihpc.transport import Containers

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, name: str | None, state: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "MINIHPC_STATE_DIR": str(state), **({"MINIHPC_CLUSTER": name} if name else {})}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=60)


NAMES = ("from minihpc import RUN_DIR, PROOF_DIR, tree_env; from minihpc.network import NETWORK; "
         "from minihpc.transport import _COMPOSE, container_name; import json; "
         "print(json.dumps([str(RUN_DIR), str(PROOF_DIR), NETWORK, container_name('c1'), _COMPOSE[1], "
         "tree_env({})['MINIHPC_CLUSTER']]))")


@pytest.mark.parametrize(("name", "suffix", "project"), [(None, "", "minihpc"), ("minihpc", "", "minihpc"),
                                                         ("second", "-second", "second"),
                                                         ("ci-22-05", "-ci-22-05", "ci-22-05")])
def test_a_name_gives_the_cluster_its_own_state_project_and_network(tmp_path: Path, name: str | None, suffix: str,
                                                                    project: str) -> None:
    r = python(NAMES, name, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [str(tmp_path / f".run{suffix}"), str(tmp_path / f".proof{suffix}"),
                                    f"{project}_default", f"{project}-c1-1", f"MINIHPC_CLUSTER={project}", project]


@pytest.mark.parametrize("name", ["Second", "../x", "x/../../y", "a b", "x;id", "$(id)", "-x", "1st", "x" * 31,
                                  "x_y", "x\n"])
def test_a_name_that_is_no_name_is_refused_before_anything(tmp_path: Path, name: str) -> None:
    r = subprocess.run([sys.executable, "-m", "minihpc", "status"], cwd=ROOT, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "MINIHPC_STATE_DIR": str(tmp_path), "MINIHPC_CLUSTER": name},
                       check=False, timeout=60)
    assert r.returncode == 2, r
    assert r.stderr.startswith(f"minihpc: error: MINIHPC_CLUSTER={name[:40]!r} is not a cluster name; give "
                               "1 to 30 lowercase letters"), r.stderr
    assert r.stderr.count("\n") == 1 and not list(tmp_path.iterdir()), "one line, and nothing made"
    # Nor does its state ever name a path outside the state directory.
    paths = python("from minihpc import RUN_DIR, PROOF_DIR; print(RUN_DIR); print(PROOF_DIR)", name, tmp_path)
    assert all(Path(p).parent == tmp_path for p in paths.stdout.split("\n")[:2]), paths.stdout


@pytest.fixture
def no_containers(monkeypatch: pytest.MonkeyPatch) -> dict[int, list[str]]:
    """Containers publishing each port, as the engine would say (none unless set)."""
    published: dict[int, list[str]] = {}
    monkeypatch.setattr(bringup.containers, "publishing", lambda port: published.get(port, []))
    return published


def held_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_a_port_another_program_holds_is_refused_with_a_free_one(no_containers: dict[int, list[str]]) -> None:
    with held_port() as s:
        port = s.getsockname()[1]
        with pytest.raises(BadInput) as e:
            bringup.check_port(Topology.from_env({"SSH_PORT": str(port)}))
    assert e.value.what == f"SSH_PORT={port} is in use on this machine by another program"
    free = int(e.value.fix.rsplit(" ", 1)[1])
    assert e.value.fix == f"give this cluster another port: minihpc up --ssh-port {free}" and free != port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", free))  # it is free


def test_a_port_whose_last_connections_are_closing_is_free(no_containers: dict[int, list[str]]) -> None:
    """After `down` the login node's proxy closed its connections first: they wait in TIME_WAIT on the
    port for a minute, and hold nothing (what `up` right after `down` met)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Docker's proxy (Go) listens
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server's side closes first: its end waits in TIME_WAIT
        client.close()
    bringup.check_port(Topology.from_env({"SSH_PORT": str(port)}))


def test_a_port_another_cluster_publishes_is_refused(no_containers: dict[int, list[str]]) -> None:
    no_containers[2222] = ["minihpc-login-1"]
    no_containers[2223] = ["other-login-1"]
    named = Topology.from_env({"SSH_PORT": "2223"})
    with pytest.raises(BadInput, match=r"^SSH_PORT=2223 is published by container other-login-1 .another cluster's "
                                       r"login node\?.; give this cluster another port: minihpc up --ssh-port \d+$"):
        bringup.check_port(named)
    # Its own login node holding it is the cluster being re-run, no clash.
    bringup.check_port(Topology.from_env({"SSH_PORT": "2222"}))


def test_a_cluster_keeps_its_port_subnet_and_cpu_weight_unless_given(made: Callable[..., Path]) -> None:
    run = made()
    cluster = json.loads((run / "cluster.json").read_text())
    configs.render(Topology.from_env({"SSH_PORT": "2300", "SUBNET": "10.214.0.0/24"}), run,
                   ROOT / "docker-compose.yml")
    assert (cluster["ssh_port"], json.loads((run / "cluster.json").read_text())["ssh_port"]) == (2222, 2300)
    assert bringup.kept_placement({"NODES": "3"}) == {"NODES": "3", "SSH_PORT": "2300", "SSH_ADDRESS": "127.0.0.1",
                                                      "SUBNET": "10.214.0.0/24", "CPU_SHARES": "1024"}
    assert bringup.kept_placement({"SSH_PORT": "2301", "SUBNET": " "})["SSH_PORT"] == "2301"
    assert bringup.kept_placement({"SUBNET": " "})["SUBNET"] == "10.214.0.0/24"


def test_clusters_are_the_projects_running_minihpc_images(monkeypatch: pytest.MonkeyPatch) -> None:
    out = ("minihpc minihpc/slurm:abc-slurm24.11\nminihpc minihpc/db:abc\nci-22-05 minihpc/slurm:def-slurm22.05\n"
           "web nginx:latest\nodd\n")
    monkeypatch.setattr("minihpc.transport._poll", lambda argv, t: subprocess.CompletedProcess(argv, 0, out, ""))
    assert Containers().clusters() == ["ci-22-05", "minihpc"]


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.10"])
def test_sshd_beyond_loopback_only_when_confirmed(address: str, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bringup, "_port_free", lambda port, a="127.0.0.1": True)  # as if the host had it
    t = Topology.from_env({"SSH_ADDRESS": address})
    where = "this machine's port 2222" if address == "0.0.0.0" else f"{address}:2222"
    with pytest.raises(BadInput) as e:
        bringup.check_published(t, {"SSH_ADDRESS": address})
    assert str(e.value) == (f"SSH_ADDRESS={address} publishes the login node's sshd beyond this machine: anyone who "
                            f"reaches {where} can try the lab user's and the learners' keys; confirm it with "
                            "--publish-ssh (PUBLISH_SSH=yes), or leave SSH_ADDRESS at 127.0.0.1")
    bringup.check_published(t, {"SSH_ADDRESS": address, "PUBLISH_SSH": "yes"})
    assert f"warning: the login node's sshd is published on {address}:2222" in capsys.readouterr().err
    bringup.check_published(t, {})  # kept from the cluster made so: confirmed then, and reminded
    assert f"warning: the login node's sshd is published on {address}:2222" in capsys.readouterr().err
    # Loopback stays published beside it: the project's own ssh and `site local` dial 127.0.0.1.
    assert t.ssh_published == (["0.0.0.0"] if address == "0.0.0.0" else ["127.0.0.1", address])
    bringup.check_published(Topology.from_env({"SSH_ADDRESS": "127.0.0.2"}), {"SSH_ADDRESS": "127.0.0.2"})


def test_sshd_is_published_only_on_an_address_of_this_machine() -> None:
    t = Topology.from_env({"SSH_ADDRESS": "203.0.113.7"})  # TEST-NET-3: nobody's
    with pytest.raises(BadInput, match=r"^SSH_ADDRESS=203.0.113.7 is not an address of this machine; give one of its "
                                       r"own \(ip -4 addr\), or 0.0.0.0 for every interface$"):
        bringup.check_published(t, {"SSH_ADDRESS": "203.0.113.7", "PUBLISH_SSH": "yes"})
