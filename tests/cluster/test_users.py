"""Two unprivileged users, each in their own account, and what neither can do:
read the cluster's secrets, reach the NFS backing store, change node state or
accounting, read or write the other's private files on /shared, or cancel
the other's jobs. Every check runs as each user, both ways. And what the
containers get beyond Docker's defaults: only what FUSE and memory sampling need."""

from __future__ import annotations

import pytest
from support import Cluster

from minihpc import policy
from minihpc.cluster import Cluster as Client

SECRETS = {
    # node -> files only root (or the daemon's user) may read
    "login": ["/etc/munge/munge.key", "/run/secrets/munge_key"],
    "c1": ["/etc/munge/munge.key", "/run/secrets/munge_key"],
    "slurmdbd": ["/etc/munge/munge.key", "/etc/slurm/slurmdbd.conf", "/run/secrets/db_password"],
}


@pytest.fixture(params=["lab", "other"])
def pair(request: pytest.FixtureRequest, client: Client) -> tuple[str, str]:
    """(user, the other user)."""
    f = client.facts
    return (f.lab_user, f.other_user) if request.param == "lab" else (f.other_user, f.lab_user)


def test_each_user_has_their_own_association(client: Client) -> None:
    f = client.facts
    for user, account in ((f.lab_user, f.lab_account), (f.other_user, f.other_account)):
        r = client.sh("id -u; sacctmgr -n -P show user $USER format=DefaultAccount", user=user)
        assert r.rc == 0 and r.out.split() == [str(f.lab_uid if user == f.lab_user else f.other_uid), account], r.out


def test_no_secret_is_readable(client: Client, pair: tuple[str, str]) -> None:
    user, _ = pair
    for node, paths in SECRETS.items():
        for path in paths:
            r = client.sh(f"cat {path}", node=node, user=user)
            assert r.rc != 0 and "Permission denied" in r.out, (user, node, path, r.out[:200])


def test_the_nfs_backing_store_is_out_of_reach(client: Client, pair: tuple[str, str]) -> None:
    user, _ = pair
    # The export, the active profile (every node's lag and faults) and the claims of a cluster-wide
    # fault (taken, it fails no one: a user could spend another's EIO or dodge their own), all behind
    # /srv/nfs, root's alone (0700: test_nfs.py).
    for node in (client.facts.login, client.facts.nodes[0]):
        r = client.sh("ls /srv/nfs/export; touch /srv/nfs/export/x; touch /srv/nfs/control/profile.json; "
                      "touch /srv/nfs/control/claims/x; ls /srv/nfs/control/claims", node=node, user=user)
        assert r.rc != 0 and r.out.count("Permission denied") == 5, (user, node, r.out)


# Alone: the node's state must read idle, mix or alloc, and others' jobs make it comp or planned too.
@pytest.mark.alone
def test_node_state_and_accounting_are_out_of_reach(client: Client, pair: tuple[str, str]) -> None:
    user, other = pair
    f = client.facts
    node = f.nodes[0]
    for cmd in (f"scontrol update nodename={node} state=drain reason=mine",
                f"scontrol update nodename={node} state=down reason=mine",
                f"sacctmgr -i modify user where name={other} set DefaultAccount={f.lab_account}",
                f"sacctmgr -i delete user {other}",
                "sacctmgr -i add qos mine"):
        r = client.sh(cmd, user=user)
        assert r.rc != 0, (user, cmd, r.out)
    assert client.node_states()[node] in ("idle", "mix", "alloc"), client.node_states()
    assert {q["Name"] for q in client.qos()} == {q.name for q in policy.QOS}


def test_private_files_on_shared_stay_private(client: Client, pair: tuple[str, str]) -> None:
    user, other = pair
    private = f"/shared/test-users-{other}"
    r = client.sh(f"rm -rf {private} && mkdir -m 700 {private} && echo secret > {private}/notes", user=other)
    assert r.rc == 0, r.out
    try:
        for node in (client.facts.login, client.facts.nodes[-1]):
            for cmd in (f"ls {private}", f"cat {private}/notes", f"touch {private}/mine", f"rm -f {private}/notes",
                        f"mv {private} /shared/taken-{user}", f"chmod 777 {private}"):
                r = client.sh(cmd, node=node, user=user)
                assert r.rc != 0, (user, node, cmd, r.out)
        assert client.sh(f"cat {private}/notes", user=other).out == "secret\n"
    finally:
        client.sh(f"rm -rf {private}", user=other)


def test_the_other_users_jobs_cannot_be_touched(client: Client, pair: tuple[str, str]) -> None:
    user, other = pair
    r = client.sh("sbatch --parsable --hold -o /dev/null --wrap true", user=other, workdir="/tmp")
    assert r.rc == 0, r.out
    job = r.out.strip()
    try:
        for cmd in (f"scancel {job}", f"scontrol release {job}", f"scontrol update jobid={job} timelimit=1",
                    f"scontrol requeue {job}", f"scancel -u {other}"):
            client.sh(cmd, user=user)
        state = client.sh(f"squeue -h -j {job} -o '%u %T %l'", user=other).out.split()
        assert state[:2] == [other, "PENDING"] and state[2] != "1:00", (user, state)
    finally:
        client.sh(f"scancel {job}", user=other)


def test_only_the_fuse_clients_get_sys_admin_and_the_fuse_device(cluster: Cluster) -> None:
    """FUSE needs CAP_SYS_ADMIN and /dev/fuse (login and compute nodes); slurmstepd
    needs CAP_SYS_PTRACE to sample job memory (compute nodes). Nothing else gets any."""
    f = cluster.facts
    for service in ["db", *cluster.slurm_services]:
        host = cluster.inspect(service)["HostConfig"]
        caps = {c.removeprefix("CAP_") for c in host["CapAdd"] or []}
        devices = [d["PathOnHost"] for d in host["Devices"] or []]
        fuse = service in f.client_nodes
        assert caps == ({"SYS_ADMIN"} if fuse else set()) | ({"SYS_PTRACE"} if service in f.nodes else set()), \
            (service, caps)
        assert devices == (["/dev/fuse"] if fuse else []), (service, devices)
