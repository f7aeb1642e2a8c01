"""Secrets are per cluster, owned correctly, and appear in no image layer or git."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Cluster, run_ok

from minihpc import releases

LAB_UID = 1000


def _secrets(cluster: Cluster) -> dict[str, bytes]:
    d = cluster.root / ".run/secrets"
    return {name: (d / name).read_bytes() for name in ("munge_key", "db_password", "ssh_host_ed25519_key",
                                                        "ssh_user_ed25519")}


def test_munge_key_mode_and_owner_on_every_node(cluster: Cluster) -> None:
    key = _secrets(cluster)["munge_key"]
    assert len(key) == 1024
    for service in cluster.slurm_services:
        host = cluster.host(service)
        assert run_ok(host, "stat -c '%a %U %G' /etc/munge/munge.key").split() == ["400", "munge", "munge"]
        assert run_ok(host, "sha256sum < /etc/munge/munge.key").split()[0] == \
            subprocess.run(["sha256sum"], input=key, capture_output=True, check=True).stdout.decode().split()[0]


def test_secrets_reach_every_node_root_owned_and_closed_to_users(cluster: Cluster) -> None:
    for service in cluster.slurm_services:
        host = cluster.host(service)
        for name in ("munge_key", *(["db_password"] if service == "slurmdbd" else [])):
            assert run_ok(host, f"stat -c '%u %g %a' /run/secrets/{name}").split() == ["0", "0", "400"], \
                f"{service}: /run/secrets/{name}"
        user = cluster.as_user(service)
        for path in ("/run/secrets/munge_key", "/etc/munge/munge.key"):
            r = user.run(f"cat {path}")
            assert r.rc != 0 and "Permission denied" in r.stderr, f"{service}: the lab user read {path}"


def test_the_rest_apis_signing_key_is_slurmusers_on_the_controller_and_the_database_only(cluster: Cluster) -> None:
    """Whoever holds it can make a token for anyone, root included: SlurmUser's
    on slurmctld and slurmdbd (0400), no user can read it there, and no other
    container has it, slurmrestd's included."""
    key = (cluster.root / ".run/secrets/jwt_hs256.key").read_bytes()
    assert len(key) == 32
    for service in cluster.slurm_services:
        host = cluster.host(service)
        has = service in ("slurmctld", "slurmdbd")
        r = host.run("stat -c '%a %U %G' /etc/slurm/jwt_hs256.key /run/secrets/jwt_key")
        if not has:
            assert "No such file" in r.stderr and r.stdout == "", f"{service} holds the JWT key: {r.stdout}"
            continue
        assert r.stdout.split("\n")[:2] == ["400 slurm slurm", "400 root root"], (service, r.stdout)
        assert run_ok(host, "sha256sum < /etc/slurm/jwt_hs256.key").split()[0] == \
            subprocess.run(["sha256sum"], input=key, capture_output=True, check=True).stdout.decode().split()[0]
        for path in ("/etc/slurm/jwt_hs256.key", "/run/secrets/jwt_key"):
            r = cluster.as_user(service).run(f"cat {path}")
            assert r.rc != 0 and "Permission denied" in r.stderr, f"{service}: the lab user read {path}"


def test_secrets_made_by_a_non_root_host_user_are_handed_to_root(cluster: Cluster) -> None:
    """A checkout owned by uid 1000 (a user in the docker group runs make
    cluster-up): cluster/secrets.sh, run as that user, leaves root's files."""
    docker_gid = os.stat("/var/run/docker.sock").st_gid
    work = Path(tempfile.mkdtemp(prefix="minihpc-secrets-"))
    try:
        work.chmod(0o755)
        shutil.copy(cluster.root / "cluster/secrets.sh", work / "secrets.sh")
        (work / "secrets.sh").chmod(0o755)
        os.chown(work, LAB_UID, LAB_UID)
        r = subprocess.run(["setpriv", f"--reuid={LAB_UID}", f"--regid={LAB_UID}", f"--groups={docker_gid}",
                            str(work / "secrets.sh"), str(work / "secrets")], capture_output=True, text=True,
                           check=False, timeout=120, env={"PATH": os.environ["PATH"], "HOME": str(work),
                                                          "BASE_IMAGE": releases.named(cluster.facts.slurm).base_image})
        assert r.returncode == 0, r.stderr
        assert "handing the secrets to root" in r.stderr
        for name, size in (("munge_key", 1024), ("db_password", None), ("ssh_host_ed25519_key", None)):
            st = (work / "secrets" / name).stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o400), name
            assert size is None or st.st_size == size
        # The lab user's SSH key stays the host user's: `minihpc ssh` and `site check` log in with it.
        st = (work / "secrets/ssh_user_ed25519").stat()
        assert (st.st_uid, st.st_mode & 0o777) == (LAB_UID, 0o600)
        r = subprocess.run(["setpriv", f"--reuid={LAB_UID}", f"--regid={LAB_UID}", "--clear-groups", "cat",
                            str(work / "secrets/munge_key")], capture_output=True, check=False)
        assert r.returncode != 0, "the host user can no longer read the key either"
    finally:
        shutil.rmtree(work)


def _layer_files(image: str) -> Iterator[bytes]:
    """Every file's bytes in every layer of an image: read from the layers'
    directories when the engine keeps them as overlay2 does (and this test
    may read them), else from `docker save`'s stream, where every layer is an
    uncompressed tar and so each file's bytes are in it whole (saving 1.7 GB
    costs half a minute of CPU, reading the directories a few seconds)."""
    driver = json.loads(subprocess.run(["docker", "image", "inspect", "-f", "{{json .GraphDriver}}", image],
                                       capture_output=True, text=True, check=True).stdout)
    data = driver.get("Data") or {}
    dirs = [Path(d) for d in [data.get("UpperDir", ""), *data.get("LowerDir", "").split(":")] if d]
    if driver.get("Name") == "overlay2" and dirs and all(os.access(d, os.R_OK | os.X_OK) for d in dirs):
        for d in dirs:
            for root, _, names in os.walk(d):
                for name in names:
                    f = Path(root, name)
                    if f.is_file() and not f.is_symlink():
                        yield f.read_bytes()
        return
    yield subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout


# A file each image holds (COPY'd in) whose longest line, found in a layer, shows the search reads them.
CANARY = {"minihpc/db": "cluster/db-entrypoint.sh", "minihpc/slurm": "cluster/entrypoint.sh"}


@pytest.mark.cost(15)
def test_no_secret_in_any_image_layer(cluster: Cluster) -> None:
    secrets = _secrets(cluster)
    # Any OpenSSH private key at all (its armour and the start of its body; ssh's binaries hold the armour
    # alone): the login node's host key is the cluster's, never the image's.
    needles = [secrets["munge_key"][:64], secrets["munge_key"][-64:], secrets["db_password"],
               secrets["ssh_host_ed25519_key"][-200:-40], secrets["ssh_user_ed25519"][-200:-40],
               b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE"]
    images = {cluster.inspect(s)["Config"]["Image"] for s in ("db", "slurmctld")}
    assert {i.split(":")[0] for i in images} == set(CANARY), images
    for image in images:
        canary = max((cluster.root / CANARY[image.split(":")[0]]).read_bytes().splitlines(), key=len)
        seen = False
        for blob in _layer_files(image):
            seen = seen or canary in blob
            for needle in needles:
                assert needle not in blob, f"a secret is inside {image}"
        assert seen, f"could not read the files in the layers of {image}"


def test_the_login_nodes_ssh_keys_are_this_clusters_and_closed_to_users(cluster: Cluster) -> None:
    login, user = cluster.host("login"), cluster.as_user("login")
    host_pub = (cluster.root / ".run/secrets/ssh_host_ed25519_key.pub").read_text().split()[1]
    assert host_pub in run_ok(login, "ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key")
    assert run_ok(login, "stat -c '%U %a' /etc/ssh/ssh_host_ed25519_key").split() == ["root", "600"]
    assert run_ok(login, f"stat -c '%U %a' /etc/ssh/authorized_keys/{cluster.lab_user}").split() == ["root", "644"]
    assert user.run("cat /etc/ssh/ssh_host_ed25519_key").rc != 0
    assert user.run(f"echo 'ssh-ed25519 AAAA x' >> /etc/ssh/authorized_keys/{cluster.lab_user}").rc != 0, \
        "the lab user cannot add a key"


def test_no_secret_in_container_config(cluster: Cluster) -> None:
    pw = _secrets(cluster)["db_password"].decode()
    for service in ["db", *cluster.slurm_services]:
        cfg = cluster.inspect(service)["Config"]
        assert pw not in " ".join(cfg.get("Env") or []) + " ".join(cfg.get("Cmd") or []), service


def test_no_secret_in_git(cluster: Cluster) -> None:
    root: Path = cluster.root
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert ".run/" not in files and "munge_key" not in files and "db_password\n" not in files
    assert "ssh_host_ed25519_key" not in files and "ssh_user_ed25519" not in files
    pw = _secrets(cluster)["db_password"].decode().strip()
    assert len(pw) >= 16
    r = subprocess.run(["git", "grep", "-F", "-q", pw, "HEAD"], cwd=root, check=False)
    assert r.returncode == 1, "the database password is committed"
