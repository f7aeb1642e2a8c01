"""Proofs that the cluster is a real, correctly secured SLURM cluster."""

from __future__ import annotations

import re
import secrets

import pytest
from support import Cluster, eventually, q, run_ok, sbatch_waited


@pytest.mark.smoke
def test_munge_credential_from_login_decodes_everywhere(cluster: Cluster) -> None:
    cred = run_ok(cluster.host("login"), "munge -n").strip()
    assert cred.startswith("MUNGE:")
    for service in cluster.slurm_services:
        if service == "login":
            continue
        out = run_ok(cluster.host(service), f"printf %s {q(cred)} | unmunge")
        assert "STATUS:          Success (0)" in out, f"{service}: {out}"


def test_a_credential_from_another_key_is_rejected(cluster: Cluster) -> None:
    """The check above can fail: a second munged with its own key mints a
    credential that the cluster's munged refuses."""
    c1 = cluster.host("c1")
    run_ok(c1, "install -d -o munge -g munge -m 0700 /tmp/othermunge && "
               "dd if=/dev/urandom of=/tmp/othermunge/key bs=1024 count=1 status=none && "
               "chown munge:munge /tmp/othermunge/key && chmod 400 /tmp/othermunge/key && "
               "runuser -u munge -- munged --key-file=/tmp/othermunge/key --socket=/tmp/othermunge/sock "
               "--pid-file=/tmp/othermunge/pid --seed-file=/tmp/othermunge/seed "
               "--log-file=/tmp/othermunge/log --force")
    try:
        cred = run_ok(c1, "munge -n --socket=/tmp/othermunge/sock").strip()
        r = cluster.host("login").run(f"printf %s {q(cred)} | unmunge")
        assert r.rc != 0
        assert "Invalid credential" in r.stderr + r.stdout
    finally:
        c1.run("kill $(cat /tmp/othermunge/pid); rm -rf /tmp/othermunge")


DAEMON_USERS = {
    "slurmctld": [("slurmctld", "slurm"), ("munged", "munge")],
    "slurmdbd": [("slurmdbd", "slurm"), ("munged", "munge")],
    "login": [("munged", "munge")],
}


def _owner(host, name: str) -> set[str]:
    """Users running a program, matched on argv[0] (Debian's binaries are
    slurmctld-wlm etc. under the hood, so ps -C misses them)."""
    out = run_ok(host, "ps -eo user=,args=")
    rows = (line.split() for line in out.splitlines() if line.strip())
    return {r[0] for r in rows if len(r) > 1 and r[1].rsplit("/", 1)[-1] == name}


@pytest.mark.smoke
def test_every_daemon_runs_as_its_user(cluster: Cluster) -> None:
    expected = dict(DAEMON_USERS)
    for node in cluster.compute_names:
        expected[node] = [("slurmd", "root"), ("munged", "munge")]
    for service, daemons in expected.items():
        host = cluster.host(service)
        for name, user in daemons:
            assert _owner(host, name) == {user}, f"{name} on {service}"
    assert _owner(cluster.host("db"), "mariadbd") == {"mysql"}


@pytest.mark.alone  # every node idle: no other test's job may run meanwhile
def test_sinfo_shows_exactly_the_nodes_idle(cluster: Cluster) -> None:
    out = run_ok(cluster.as_user(), "sinfo -h -N -o '%N %t %c %m'")
    # One row per node and partition: each node once, with its own memory.
    rows = sorted({tuple(line.split()) for line in out.splitlines()})
    f = cluster.facts
    assert rows == sorted((n, "idle", str(f.cpus), str(f.node_mem_mb[n])) for n in cluster.compute_names)


@pytest.mark.smoke
@pytest.mark.cost(90)
def test_sbatch_and_srun_as_lab_user_are_accounted(cluster: Cluster) -> None:
    lab = cluster.as_user()
    assert run_ok(lab, "id -un").strip() == cluster.lab_user
    out = run_ok(lab, "cd /tmp && " + sbatch_waited("-N1 -w c1 -o /dev/null --wrap 'hostname'"))
    batch_id = out.strip().split(";")[0]
    # A name of its own to find it by in sacct: other tests' jobs of the lab user may be named hostname too.
    name = f"test-srun-{secrets.token_hex(4)}"
    srun = run_ok(lab, f"srun --quiet -N2 -w c1,c2 -J {name} hostname")
    assert sorted(srun.split()) == ["c1", "c2"]
    srun_id = eventually(lambda: run_ok(lab, f"sacct -n -X -P -o JobID --name {name}").strip(), timeout=60,
                         what=f"sacct to know the srun job {name}")

    def rows() -> dict[str, tuple[str, str, str]] | None:
        out = lab.run(f"sacct -n -X -P -o JobID,State,NodeList,User -j {batch_id},{srun_id}").stdout
        got = {r[0]: (r[1], r[2], r[3]) for r in (line.split("|") for line in out.splitlines())}
        done = len(got) == 2 and all(v[0] == "COMPLETED" for v in got.values())
        return got if done else None

    got = eventually(rows, timeout=60, what="sacct to show both jobs COMPLETED")
    assert got[batch_id] == ("COMPLETED", "c1", cluster.lab_user)
    assert got[srun_id] == ("COMPLETED", "c[1-2]", cluster.lab_user)


def test_lab_user_is_the_same_on_every_node(cluster: Cluster) -> None:
    ids = {s: run_ok(cluster.host(s), "getent passwd student").strip() for s in cluster.slurm_services}
    assert len(set(ids.values())) == 1, ids
    assert re.fullmatch(r"student:x:1000:1000::/home/student:/bin/bash", next(iter(ids.values())))


@pytest.mark.smoke
def test_lab_user_association_for_the_plugin(cluster: Cluster) -> None:
    out = run_ok(cluster.as_user(), "sacctmgr -n -P show assoc user=student format=cluster,account,user")
    assert out.split() == ["minihpc|lab|student"]


def test_no_container_is_privileged(cluster: Cluster) -> None:
    for service in ["db", *cluster.slurm_services]:
        assert cluster.inspect(service)["HostConfig"]["Privileged"] is False, service
