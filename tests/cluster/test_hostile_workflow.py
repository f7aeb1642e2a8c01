"""A workflow that takes over the lab user's login shell (dotfiles, a PATH of
fake tools) controls nothing minihpc runs afterwards: its commands get a known
environment and none of the user's dotfiles (minihpc.transport.clean_shell),
so reports, fetched outputs and Slurm's answers stay Slurm's."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Cluster, cli, run_ok, sbatch_waited

from minihpc.cluster import Cluster as Client

# Alone: the workflow takes over the lab user's login shell (dotfiles, /tmp/hostile-bin),
# which every other test's user shares until the fixture puts it back.
pytestmark = pytest.mark.alone

ROOT = Path(__file__).resolve().parents[2]
DOTFILES = (".bashrc", ".profile", ".bash_profile", ".bash_login")



@pytest.fixture
def hostile(tmp_path: Path, cluster: Cluster, client: Client) -> Iterator[Path]:
    wf = tmp_path / "hostile"
    shutil.copytree(ROOT / "tests/workflows/hostile", wf)
    home = f"/home/{client.facts.lab_user}"
    yield wf
    # The user's shell as useradd made it, whatever the workflow left.
    root = cluster.host("login")
    run_ok(root, f"rm -rf /tmp/hostile-bin {client.facts.shared}/test-hostile; "
                 + "; ".join(f"rm -f {home}/{d}; [ -e /etc/skel/{d} ] && install -o {client.facts.lab_user} "
                             f"-g {client.facts.lab_user} -m 644 /etc/skel/{d} {home}/{d}; true" for d in DOTFILES))


def test_a_workflow_that_takes_over_the_login_shell_controls_nothing_minihpc_runs(
        hostile: Path, cluster: Cluster, client: Client) -> None:
    first = cli("run", str(hostile), "--name", "test-hostile", "--fresh")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    # The attack is in place: a login shell of the lab user is the workflow's now.
    login_shell = cluster.host("login", client.facts.lab_user).run("bash -lc 'echo; type -t sacct; tar --version'")
    assert "INJECTED-BY-DOTFILE" in login_shell.stdout and "INJECTED-TAR" in login_shell.stdout, login_shell

    second = cli("run", str(hostile), "--name", "test-hostile", "--fetch", "out/*.txt")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr
    assert "INJECTED" not in second.stdout + second.stderr
    assert (hostile / "out/planted.txt").read_text() == "planted\n", "the real file came back, not a fake stream"
    # Every command the client runs sees the system's tools and prints only its own output.
    assert client.sh("echo ok").out == "ok\n"
    assert client.sh("command -v sacct tar snakemake").out.split() == [
        "/usr/bin/sacct", "/usr/bin/tar", "/opt/minihpc/venv/bin/snakemake"]
    job = client.sh(sbatch_waited("-o /dev/null --chdir /tmp --wrap true")).out.strip()
    assert job.isdigit(), job
    rows = [r for r in client.sacct("now-10minutes", ("JobID", "State")) if r["JobID"] == job]
    assert rows == [{"JobID": job, "State": "COMPLETED"}], rows
