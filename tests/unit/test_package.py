"""minihpc installs as a package: `pip install .` gives the `minihpc` command,
the cluster's files inside the wheel, run state outside it, and the pytest
plugin registered; a cluster from another state directory is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minihpc import configs, files, releases

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pkg") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True)
    r = subprocess.run([str(d / "bin/python"), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True,
                       text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def installed(venv: Path, code: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MINIHPC_")}
    r = subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True, text=True, check=True,
                       cwd="/", env={**clean, **env})
    return json.loads(r.stdout)


def test_the_wheel_carries_the_cluster_and_keeps_state_outside(venv: Path, tmp_path: Path) -> None:
    info = installed(venv, "import json, minihpc; print(json.dumps({'root': str(minihpc.ROOT), "
                           "'run': str(minihpc.RUN_DIR), 'installed': minihpc.INSTALLED}))",
                     HOME=str(tmp_path), XDG_STATE_HOME="")
    root = Path(info["root"])
    assert info["installed"] and root.parent.name == "minihpc" and "site-packages" in root.parts
    assert info["run"] == str(tmp_path / ".local/state/minihpc/.run")
    for rel in ("docker-compose.yml", "cluster/Dockerfile", "nfs/client.py", "scratch/inspect.py",
                "profiles/slurm/config.yaml", "lab/Snakefile", "bench/staging.py"):
        assert (root / rel).is_file(), rel
    assert all(os.access(root / "cluster" / f, os.X_OK) for f in ("compose.sh", "secrets.sh", "base-image.sh"))
    # The configuration templates travel in the package itself (minihpc.configs reads them).
    assert all((root.parent / "conf" / f).is_file() for f in ("slurm.conf", "gres.conf", "cgroup.conf"))
    assert not list(root.rglob(".run")) and not (root / "tests").exists()
    # The same image inputs as the checkout: the same image tag, so images are shared.
    files.write_if_changed(tmp_path / "release.env", configs.release_env(releases.default()))
    tag = [subprocess.run([str(r / "cluster/image-tag.sh")], capture_output=True, text=True, check=True,
                          env={**os.environ, "MINIHPC_RUN_DIR": str(tmp_path)}).stdout for r in (root, ROOT)]
    assert tag[0] == tag[1]


def test_the_console_script_and_the_pytest_plugin(venv: Path, tmp_path: Path) -> None:
    r = subprocess.run([str(venv / "bin/minihpc"), "up", "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.startswith("usage: minihpc up"), r.stderr
    r = subprocess.run([str(venv / "bin/minihpc"), "status"], capture_output=True, text=True, check=False,
                       env={"PATH": os.environ["PATH"], "MINIHPC_STATE_DIR": str(tmp_path)})
    assert r.returncode == 1
    assert r.stderr == f"minihpc: error: no cluster state in {tmp_path}/.run; bring a cluster up first: minihpc up\n"
    plugins = installed(venv, "import json; from importlib.metadata import entry_points; "
                              "print(json.dumps({e.name: e.value for e in entry_points(group='pytest11')}))")
    assert plugins == {"minihpc": "minihpc.pytest_plugin"}


def test_importing_minihpc_changes_no_one_elses_session(venv: Path) -> None:
    """What the pytest plugin imports in every test session of a machine with
    minihpc installed: no sys.path entry added, no environment variable set.
    nfs and scratch are packages of the wheel, found without either."""
    info = installed(venv, "import json, os, sys; path, env = list(sys.path), dict(os.environ); "
                           "import minihpc, minihpc.cli, minihpc.runner, minihpc.cluster, minihpc.transport; "
                           "import nfs.profiles, scratch.policy; "
                           "print(json.dumps({'path': sys.path == path, 'env': dict(os.environ) == env, "
                           "'nfs': nfs.profiles.__file__}))")
    assert info["path"] and info["env"], info
    assert "site-packages/nfs/" in info["nfs"] and "_tree" not in info["nfs"], info
