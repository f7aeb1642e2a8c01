"""The cluster's subnet is checked free before Compose makes the network:
Docker refuses an overlap with its own networks, but not with the host's
routes, whose traffic the cluster's bridge would take."""

from __future__ import annotations

from pathlib import Path

import pytest

from minihpc import network
from minihpc.errors import BadInput
from minihpc.topology import Topology

HEADER = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"


def route(iface: str, dest: str, mask: str) -> str:
    """A /proc/net/route line: addresses in hex, least significant byte first."""
    def hexed(a: str) -> str:
        return "".join(f"{int(b):02X}" for b in reversed(a.split(".")))
    return f"{iface}\t{hexed(dest)}\t00000000\t0001\t0\t0\t0\t{hexed(mask)}\t0\t0\t0\n"


def net(name: str, subnet: str | None, nid: str = "d97611dce778aaaa") -> dict:
    return {"Name": name, "Id": nid, "IPAM": {"Config": [{"Subnet": subnet}] if subnet else []}}


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Sets the host's routes and Docker's networks the check sees."""
    def set_(routes: list[str], nets: list[dict] | None) -> None:
        (tmp_path / "route").write_text(HEADER + "".join(routes))
        monkeypatch.setattr(network, "ROUTES", tmp_path / "route")
        monkeypatch.setattr(network, "_docker_networks", lambda: nets)
    return set_


def check(subnet: str = "10.213.0.0/24") -> None:
    network.check_subnet(Topology.from_env({"SUBNET": subnet}))


LAN = route("eth0", "10.213.0.0", "255.255.0.0")
DEFAULT = route("eth0", "0.0.0.0", "0.0.0.0")


def test_a_free_subnet_passes_and_the_default_route_is_no_clash(host) -> None:
    host([DEFAULT, route("eth0", "192.0.2.0", "255.255.255.0"), route("docker0", "172.17.0.0", "255.255.0.0")],
         [net("bridge", "172.17.0.0/16")])
    check()


def test_a_subnet_over_the_hosts_lan_is_refused_with_a_free_one_named(host) -> None:
    host([DEFAULT, LAN], [])
    with pytest.raises(BadInput) as e:
        check()
    assert e.value.what == "SUBNET=10.213.0.0/24 overlaps the host's route on eth0 (10.213.0.0/16)"
    # Every 10.213.x.0/24 is under the LAN: the next free one is offered.
    assert e.value.fix == "choose a free private subnet: minihpc up --subnet 10.214.0.0/24 (or SUBNET=10.214.0.0/24)"


def test_a_subnet_over_another_docker_network_is_refused_with_a_free_one_named(host) -> None:
    host([route("br-0123456789ab", "10.213.0.0", "255.255.255.0")], [net("other", "10.213.0.0/24", "0123456789abff")])
    with pytest.raises(BadInput) as e:
        check()
    assert e.value.what == "SUBNET=10.213.0.0/24 overlaps Docker network other (10.213.0.0/24)"
    assert e.value.fix == "choose a free private subnet: minihpc up --subnet 10.213.1.0/24 (or SUBNET=10.213.1.0/24)"


def test_the_clusters_own_network_is_no_clash_but_another_subnet_for_it_needs_a_new_one(host) -> None:
    host([route("br-d97611dce778", "10.213.0.0", "255.255.255.0")], [net("minihpc_default", "10.213.0.0/24")])
    check()  # up again, or a resize: its own bridge's route is no clash
    with pytest.raises(BadInput) as e:
        check("10.9.0.0/24")
    assert e.value.what.startswith("the cluster's network minihpc_default has 10.213.0.0/24, not SUBNET=10.9.0.0/24")
    assert e.value.fix == "minihpc down (keeps data and secrets), then minihpc up again"
    host([], [net("minihpc_default", "172.18.0.0/16")])  # made by a minihpc before fixed addresses
    with pytest.raises(BadInput, match="has 172.18.0.0/16, not SUBNET=10.213.0.0/24"):
        check()


def test_without_an_engine_the_hosts_routes_are_still_checked(host) -> None:
    host([LAN], None)
    with pytest.raises(BadInput, match="overlaps the host's route on eth0"):
        check()
