"""The NFS-style shared filesystem on the live cluster: mounted by the FUSE
client on every node, the backing volume out of users' reach, profiles switched
at runtime, the deterministic delay, a client crash (injected EIO: test_shared_eio.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from support import Cluster, eventually, run_ok

from minihpc.cluster import Cluster as Client
from minihpc.ready import service_health
from minihpc.transport import containers

DIR = "/shared/nfs-proof"


# It switches every node's NFS client profile (to off, before and after): its tests are alone, or take turns
# with the others that set it.
@pytest.fixture
def proof_dir(cluster: Cluster, client: Client) -> Iterator[str]:
    client.set_nfs_profile("off")
    user = cluster.as_user()
    run_ok(user, f"rm -rf {DIR} && mkdir -p {DIR}")
    yield DIR
    client.set_nfs_profile("off")
    user.run(f"rm -rf {DIR}")


def test_every_node_mounts_the_client_and_the_backing_store_is_root_only(cluster: Cluster) -> None:
    clients = ["login", *cluster.compute_names]
    # Their healthchecks, run now (a busy node may read planned for a moment: as Docker would, ask again).
    eventually(lambda: service_health(clients) == dict.fromkeys(clients, "healthy"), timeout=30,
               what=f"{clients} healthy")
    for service in clients:
        mounts = run_ok(cluster.host(service), "findmnt -n -o FSTYPE,OPTIONS /shared")
        assert mounts.startswith("fuse.minihpc") and "allow_other" in mounts and "default_permissions" in mounts
        r = cluster.as_user(service).run("ls /srv/nfs")
        assert r.rc != 0 and "Permission denied" in r.stderr, f"{service}: the lab user reached the backing store"
        assert cluster.inspect(service)["HostConfig"]["Privileged"] is False
    for service in ("slurmctld", "slurmdbd"):
        assert not cluster.host(service).exists("/srv/nfs/export"), "only NFS clients hold the volume"


@pytest.mark.alone
def test_files_are_the_lab_users_on_every_node(cluster: Cluster, proof_dir: str) -> None:
    run_ok(cluster.as_user(), f"srun -w c1 bash -c 'echo from-c1 > {proof_dir}/owned'")
    for service in ["login", *cluster.compute_names]:
        out = run_ok(cluster.host(service), f"stat -c '%U %G %a' {proof_dir}/owned; cat {proof_dir}/owned")
        assert out.split() == ["student", "student", "644", "from-c1"], f"{service}: {out}"
    assert run_ok(cluster.host("c1"), f"stat -c %u /srv/nfs/export/{proof_dir[8:]}/owned").strip() == "1000"


def _appearance_delay(cluster: Cluster, path: str) -> float:
    """A job on c1 writes `path` (its content: the write time); seconds until login sees it."""
    user = cluster.as_user()
    run_ok(user, f"srun -w c1 bash -c 'date +%s.%N > {path}.tmp && mv {path}.tmp {path}'")
    t = time.time()
    while user.run(f"test -e {path}").rc != 0:
        assert time.time() - t < 30, f"{path} never appeared on login"
        time.sleep(0.1)
    seen = time.time()
    written = float(run_ok(user, f"cat {path}"))
    return seen - written


# Side by side: its delay is on its own directory; it takes turns with the other tests that set the NFS
# profile (prove's EIO proofs: tests/scheduling.py).
@pytest.mark.cost(15)
def test_deterministic_delay_hides_a_jobs_output_from_login_for_d_seconds(cluster: Cluster, proof_dir: str,
                                                                        client: Client) -> None:
    started = {s: cluster.inspect(s)["State"]["StartedAt"] for s in ("login", "c1")}
    off = _appearance_delay(cluster, f"{proof_dir}/off.txt")
    client.set_nfs_profile("delay-3", "--set", "delay=6", "--set", f"delay_path={client.facts.on_mount(proof_dir)}/*")
    delayed = _appearance_delay(cluster, f"{proof_dir}/delayed.txt")
    assert run_ok(cluster.host("c1"), f"cat {proof_dir}/delayed.txt").strip(), "c1 sees its own write at once"
    assert off < 1.5, f"profile off: visible on login after {off:.2f}s"
    assert 5.0 <= delayed <= 7.5, f"delay 6: visible on login after {delayed:.2f}s"
    assert {s: cluster.inspect(s)["State"]["StartedAt"] for s in ("login", "c1")} == started, "switched, not restarted"


# Alone: it kills c2's NFS client, so /shared goes away there until it is back.
@pytest.mark.alone
def test_a_client_crash_is_reported_and_the_mount_comes_back(cluster: Cluster, proof_dir: str) -> None:
    c2 = cluster.host("c2")
    run_ok(c2, "pkill -KILL -f 'python -m nfs[.]client'")  # [.]: not this shell's own command line
    eventually(lambda: "NFS client exited with status" in containers.logs("c2", prefix=False),
               timeout=20, what="the crash in c2's log")
    eventually(lambda: c2.run(f"stat -t {proof_dir}").rc == 0, timeout=30, what="/shared back on c2")
    assert "exit" in run_ok(c2, "cat /run/minihpc-nfs/crashes")
    r = c2.run("stat /shared 2>&1")
    assert "Transport endpoint is not connected" not in r.stdout
    eventually(lambda: service_health(["c2"]) == {"c2": "healthy"}, timeout=60,
               what="c2 healthy again")


# Alone: it switches every node's NFS client profile.
@pytest.mark.alone
def test_minihpc_status_names_the_active_profile(cluster: Cluster, client: Client) -> None:
    client.set_nfs_profile("linux")
    try:
        out = subprocess.run([sys.executable, "-m", "minihpc", "status"], cwd=cluster.root, capture_output=True,
                             text=True, check=True, stdin=subprocess.DEVNULL).stdout
        assert "profile: linux" in out
    finally:
        client.set_nfs_profile("off")
