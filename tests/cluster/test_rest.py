"""The SLURM REST API (slurmrestd, the restd service): Debian's daemon, run as
a user of its own, listening on the cluster's network only (published on no
host port, nothing on the host's loopback), answering a token's user and no
one without one. The learners' tokens are proven in test_class.py."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from support import Cluster, run_ok

from minihpc import rest
from minihpc.facts import REST, REST_PORT
from minihpc.page import collect


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


def call(f, method: str, path: str, user: str, jwt: str, body: dict | None = None) -> tuple[int, dict]:
    """A request rest.get never makes (minihpc only reads): to show what the API refuses."""
    req = urllib.request.Request(rest.base_url(f) + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": jwt,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (the cluster's own address)
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.mark.smoke
def test_the_pages_reader_reads_the_cluster_and_can_change_nothing(cluster: Cluster) -> None:
    """The live page reads as PAGE_USER (minihpc/page/collect.py): nodes, partitions and QOS, and none of
    anyone's jobs; its token submits nothing (no association), and cancels, holds or changes no job."""
    client, f = cluster.client, cluster.facts
    v, reader = rest.api(f), collect.PAGE_USER
    jwt = rest.token(client, reader, 300)
    nodes = rest.get(f, f"/slurm/{v}/nodes", reader, jwt)
    assert nodes.ok and {n["name"] for n in nodes.body["nodes"]} == set(f.nodes), nodes
    assert rest.get(f, f"/slurm/{v}/partitions", reader, jwt).ok
    assert rest.get(f, f"/slurmdb/{v}/qos", reader, jwt).ok
    job = client.sh("sbatch --parsable -t 2 -J page-reader-target --begin=now+600 --wrap true").out.strip()
    assert job.isdigit(), job
    try:
        seen = rest.get(f, f"/slurm/{v}/jobs", reader, jwt)
        assert seen.ok and not seen.body["jobs"], seen  # PrivateData: no one's jobs
        script = "#!/bin/sh\ntrue\n"
        body = ({"script": script, "job": {"current_working_directory": "/tmp", "environment": {"PATH": "/bin"}}}
                if v == "v0.0.38" else
                {"job": {"script": script, "current_working_directory": "/tmp", "environment": ["PATH=/bin"]}})
        status, answer = call(f, "POST", f"/slurm/{v}/job/submit", reader, jwt, body)
        assert status != 200 and not answer.get("job_id"), (status, answer)
        assert "Invalid account" in json.dumps(answer.get("errors")), answer
        call(f, "DELETE", f"/slurm/{v}/job/{job}", reader, jwt)
        status, answer = call(f, "POST", f"/slurm/{v}/job/{job}", reader, jwt, {"comment": "held", "hold": True})
        assert status != 200 or answer.get("errors"), (status, answer)
        state = client.root(f"squeue -h -j {job} -o '%T %r %k'").out.split()
        assert state[:2] == ["PENDING", "BeginTime"] and "held" not in state, state
    finally:
        client.sh(f"scancel {job}")
