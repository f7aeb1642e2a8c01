"""The cluster's network: a subnet of its own, checked free before Compose makes it.

Every service has a fixed address in SUBNET (minihpc.topology), which needs a
subnet Docker does not choose itself. A subnet that overlaps another Docker
network is refused by Docker; one that overlaps a route of the host (its LAN,
a VPN) is not, and would take that traffic: both are refused here first.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

from minihpc import NAME
from minihpc.errors import BadInput
from minihpc.topology import DEFAULTS, Topology
from minihpc.transport import containers

NETWORK = f"{NAME}_default"  # Compose's name for the project's default network
ROUTES = Path("/proc/net/route")


def _docker_networks() -> list[dict] | None:
    """Docker's networks as `docker network inspect` gives them; None when the engine does not answer."""
    return containers.host_networks()


def _subnets(n: dict) -> list[str]:
    return [c["Subnet"] for c in (n.get("IPAM") or {}).get("Config") or [] if "." in c.get("Subnet", "")]


def _host_routes() -> Iterator[tuple[str, ipaddress.IPv4Network]]:
    """The host's IPv4 routes but the default one: (interface, network)."""
    try:
        lines = ROUTES.read_text().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        f = line.split()
        if len(f) < 8 or f[7] == "00000000":
            continue
        dest, mask = (socket.inet_ntoa(struct.pack("<L", int(x, 16))) for x in (f[1], f[7]))
        yield f[0], ipaddress.ip_network(f"{dest}/{mask}", strict=False)


def _taken(nets: list[dict]) -> list[tuple[str, ipaddress.IPv4Network]]:
    """What holds an address range already: Docker's networks and the host's routes."""
    taken = [(f"Docker network {n['Name']}", ipaddress.ip_network(s)) for n in nets for s in _subnets(n)]
    # A Docker bridge's route is its network, named above.
    bridges = {"docker0", *(f"br-{n['Id'][:12]}" for n in nets)}
    return taken + [(f"the host's route on {iface}", net) for iface, net in _host_routes() if iface not in bridges]


def check_subnet(t: Topology) -> None:
    """Refuse a SUBNET the cluster cannot have, naming what holds it and a free one."""
    nets = _docker_networks()
    mine = next((n for n in nets or [] if n["Name"] == NETWORK), None)
    if mine:
        have = _subnets(mine)
        if have != [t.subnet]:
            raise BadInput(f"the cluster's network {NETWORK} has {', '.join(have) or 'no IPv4 subnet'}, not "
                           f"SUBNET={t.subnet} (made by an earlier minihpc, or with another SUBNET)",
                           "minihpc down (keeps data and secrets), then minihpc up again")
        return
    taken = _taken(nets or [])
    want = ipaddress.ip_network(t.subnet)
    clash = [(what, net) for what, net in taken if want.overlaps(net)]
    if clash:
        what, net = clash[0]
        candidates = (ipaddress.ip_network(f"10.{(213 + i) % 256}.{j}.0/24") for i in range(256) for j in range(256))
        free = next((str(c) for c in candidates if not any(c.overlaps(n) for _, n in taken)), None)
        fix = (f"choose a free private subnet: minihpc up --subnet {free} (or SUBNET={free})" if free
               else f"choose a free private subnet with --subnet (default {DEFAULTS['SUBNET']})")
        raise BadInput(f"SUBNET={t.subnet} overlaps {what} ({net})", fix)
