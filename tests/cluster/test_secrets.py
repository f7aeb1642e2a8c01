"""Secrets are per cluster, owned correctly, and appear in no image layer or git."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from support import Cluster, run_ok


def _secrets(cluster: Cluster) -> dict[str, bytes]:
    d = cluster.root / ".run/secrets"
    return {name: (d / name).read_bytes() for name in ("munge_key", "db_password")}


def test_munge_key_mode_and_owner_on_every_node(cluster: Cluster) -> None:
    key = _secrets(cluster)["munge_key"]
    assert len(key) == 1024
    for service in cluster.slurm_services:
        host = cluster.host(service)
        assert run_ok(host, "stat -c '%a %U %G' /etc/munge/munge.key").split() == ["400", "munge", "munge"]
        assert run_ok(host, "sha256sum < /etc/munge/munge.key").split()[0] == \
            subprocess.run(["sha256sum"], input=key, capture_output=True, check=True).stdout.decode().split()[0]


def _layer_blobs(image: str) -> list[bytes]:
    """Every file's bytes in every layer of an image, via docker save."""
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    blobs: list[bytes] = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()
            blobs.append(data)
            if member.name.endswith((".tar", "layer.tar")) or b"ustar" in data[257:265]:
                try:
                    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                        for m in layer.getmembers():
                            if m.isfile():
                                blobs.append(layer.extractfile(m).read())
                except tarfile.ReadError:
                    pass
    return blobs


def test_no_secret_in_any_image_layer(cluster: Cluster) -> None:
    secrets = _secrets(cluster)
    needles = [secrets["munge_key"][:64], secrets["munge_key"][-64:], secrets["db_password"]]
    images = {cluster.inspect(s)["Config"]["Image"] for s in ("db", "slurmctld")}
    for image in images:
        blobs = _layer_blobs(image)
        assert len(blobs) > 100, f"could not read the layers of {image}"
        for needle in needles:
            assert not any(needle in b for b in blobs), f"a secret is inside {image}"


def test_no_secret_in_container_config(cluster: Cluster) -> None:
    pw = _secrets(cluster)["db_password"].decode()
    for service in ["db", *cluster.slurm_services]:
        cfg = cluster.inspect(service)["Config"]
        assert pw not in " ".join(cfg.get("Env") or []) + " ".join(cfg.get("Cmd") or []), service


def test_no_secret_in_git(cluster: Cluster) -> None:
    root: Path = cluster.root
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    assert ".run/" not in files and "munge_key" not in files and "db_password\n" not in files
    pw = _secrets(cluster)["db_password"].decode().strip()
    assert len(pw) >= 16
    r = subprocess.run(["git", "grep", "-F", "-q", pw, "HEAD"], cwd=root, check=False)
    assert r.returncode == 1, "the database password is committed"
