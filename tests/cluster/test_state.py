"""Clusters on one machine: `minihpc up` from another state directory under
the same name (an installed minihpc, another checkout) refuses before it
touches anything; a cluster of another name (MINIHPC_CLUSTER) runs beside
this one, once it has a port and a subnet of its own, and neither touches
the other (nor restarts the engine under it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import cli, started_containers

from minihpc import STATE
from minihpc.errors import MinihpcError
from minihpc.faults import Faults
from minihpc.transport import containers


def test_up_from_another_state_directory_refuses_and_changes_nothing(client: object, tmp_path: Path) -> None:
    before = started_containers()
    r = cli("up", "--nodes", "1", env={"MINIHPC_STATE_DIR": str(tmp_path)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr == (f"minihpc: error: a minihpc cluster named minihpc made from another state directory is on "
                        f"this machine ({STATE}); one cluster of a name per machine: remove it with "
                        f"MINIHPC_STATE_DIR={STATE} minihpc destroy --yes, use it with MINIHPC_STATE_DIR={STATE}, or "
                        "give this one another name (MINIHPC_CLUSTER=NAME, with its own --ssh-port and --subnet)\n")
    assert list(tmp_path.iterdir()) == [], "nothing may be written for the refused cluster"
    assert started_containers() == before


@pytest.mark.cost(40)
def test_a_second_cluster_runs_beside_this_one_with_its_own_address(client, tmp_path: Path) -> None:  # noqa: ANN001
    """Refused while it would take this cluster's subnet or SSH port (each
    named, with a free one), then up beside it on its own: one node, its own
    jobs and files; this cluster's containers never restarted, and the
    engine restart (fault reboot) refused while the other runs."""
    before = started_containers()
    f = client.facts
    state = {"MINIHPC_STATE_DIR": str(tmp_path)}
    r = cli("up", "--nodes", "1", env={"MINIHPC_CLUSTER": "second-test", **state})
    assert r.returncode == 2 and r.stderr.startswith(
        f"minihpc: error: SUBNET={f.subnet} overlaps Docker network minihpc_default ({f.subnet}); choose a free "
        "private subnet: minihpc up --subnet "), r.stderr
    subnet = r.stderr.split("--subnet ")[1].split()[0]
    r = cli("up", "--nodes", "1", "--subnet", subnet, env={"MINIHPC_CLUSTER": "second-test", **state})
    assert r.returncode == 2 and r.stderr.startswith(
        f"minihpc: error: SSH_PORT={f.ssh_port} is published by container minihpc-login-1 (another cluster's login "
        "node?); give this cluster another port: minihpc up --ssh-port "), r.stderr
    port = r.stderr.rsplit(" ", 1)[1].strip()
    assert list(tmp_path.iterdir()) == [] and containers.clusters() == ["minihpc"], "nothing made when refused"
    try:
        r = cli("up", "--nodes", "1", "--subnet", subnet, "--ssh-port", port, "--gpus", "0",
                env={"MINIHPC_CLUSTER": "second-test", **state})
        assert r.returncode == 0, r.stdout + r.stderr
        assert sorted(containers.clusters()) == ["minihpc", "second-test"]
        # Its own controller, its own /shared: a job there writes a file there, seen there only.
        job = subprocess.run(["docker", "exec", "-u", f.lab_user, "second-test-login-1", "bash", "-lc",
                              "srun -N1 -t 1 bash -c 'echo second > /shared/second-test.txt; hostname' && "
                              "cat /shared/second-test.txt"], capture_output=True, text=True, timeout=120,
                             check=False)
        assert (job.returncode, job.stdout.split()) == (0, ["c1", "second"]), job.stdout + job.stderr
        assert client.root("test ! -e /shared/second-test.txt").rc == 0, "the other cluster's /shared is its own"
        with pytest.raises(MinihpcError, match=r"^reboot restarts the Docker engine, and other minihpc clusters run "
                                               r"on it: second-test; stop them first"):
            Faults(client).apply("reboot")
    finally:
        r = cli("destroy", "--yes", env={"MINIHPC_CLUSTER": "second-test", **state})
    assert r.returncode == 0, r.stdout + r.stderr
    assert containers.clusters() == ["minihpc"] and not (tmp_path / ".run-second-test").exists()
    assert started_containers() == before, "this cluster's containers restarted or recreated"
