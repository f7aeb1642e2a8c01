"""The SLURM REST API (slurmrestd, the restd service): Debian's daemon, run as
a user of its own, listening on the cluster's network only (published on no
host port, nothing on the host's loopback), answering a token's user and no
one without one. The learners' tokens are proven in test_class.py."""

from __future__ import annotations

import socket

import pytest
from support import Cluster, run_ok

from minihpc import rest
from minihpc.facts import REST, REST_PORT


@pytest.mark.smoke
def test_slurmrestd_runs_as_its_own_user_on_the_clusters_network_only(cluster: Cluster) -> None:
    host = cluster.inspect(REST)
    assert not any(host["HostConfig"]["PortBindings"] or {}), host["HostConfig"]["PortBindings"]
    assert not any(v for v in (host["NetworkSettings"]["Ports"] or {}).values()), host["NetworkSettings"]["Ports"]
    # By uid: ps shortens a name past 8 characters on some releases.
    running = run_ok(cluster.host(REST), "ps -o uid= -C slurmrestd | tr -d ' ' | sort -u").split()
    uid = run_ok(cluster.host(REST), "id -u slurmrestd && id -u slurm").split()
    assert running == [uid[0]], (running, uid)
    assert uid[0] not in ("0", uid[1]), f"slurmrestd's uid {uid[0]} is root's or SlurmUser's"
    # All that listens in its namespace: slurmrestd's port (and Docker's own DNS, on 127.0.0.11 in every
    # container's namespace, served by the engine, no process of ours).
    listening = [line.split()[3] for line in run_ok(cluster.host(REST), "ss -Hltn").split("\n") if line.strip()]
    assert [a for a in listening if not a.startswith("127.0.0.11:")] == [f"0.0.0.0:{REST_PORT}"], listening
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", REST_PORT), timeout=2):
        pass  # nothing on the host's loopback


@pytest.mark.smoke
def test_a_token_gets_its_user_and_no_token_gets_nothing(cluster: Cluster) -> None:
    client, f = cluster.client, cluster.facts
    v = rest.api(f)
    for path in (f"/slurm/{v}/jobs", f"/slurmdb/{v}/jobs"):
        assert rest.get(f, path, None, None).status == 401
        assert rest.get(f, path, f.lab_user, None).status == 401
        forged = rest.get(f, path, f.lab_user, "not.a.token")
        assert not forged.ok and forged.errors, forged
        mine = rest.get(f, path, f.lab_user, rest.token(client, f.lab_user, 120))
        assert mine.ok and "jobs" in mine.body, mine
    ping = f"/slurm/{v}/ping"
    # From a node, as a user's program would: the cluster's network reaches it by name.
    r = client.sh(f"python3 -c \"import urllib.request as u; u.urlopen('http://{REST}:{REST_PORT}{ping}')\" 2>&1 "
                  "| tail -n 1")
    assert "HTTP Error 401" in r.out, r.out
