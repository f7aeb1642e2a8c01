"""minihpc is itself a site: its login node's sshd on the host's loopback,
and `minihpc site check` run against it over SSH only, with a site file that
uses none of the docker shortcuts (a `docker` on PATH that fails and logs
proves no command of the site path goes through it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Cluster, cli, eventually, q, run_ok

from minihpc import PROOF_DIR, releases
from minihpc.cluster import Cluster as Client
from minihpc.sitecheck import JOB_NAME
from minihpc.sitefile import load
from minihpc.transport import SshTransport, containers

ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture(scope="module")
def site_file(cluster: Cluster) -> Path:
    r = cli("site", "local", timeout=1800)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip())


def ssh(site_file: Path, cmd: str, *opts: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """ssh with the site file's options (and `opts`), as its user (or another)."""
    *argv, dest = SshTransport(load(site_file), "login").ssh(interactive=True)
    if user:
        dest = f"{user}@{dest.split('@')[1]}"
    return subprocess.run([*argv, "-o", "BatchMode=yes", *opts, dest, *([cmd] if cmd else [])], capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL, timeout=60)


def checks_jobs(client: Client, under: str) -> list[str]:
    """The lab user's queued or running jobs of a site check working under
    `under` (other checks run beside: the name alone is not theirs)."""
    rows = client.sh("squeue --me -h -n minihpc-site-check -o '%i %Z'").out.split("\n")
    return [r.split()[0] for r in rows if len(r.split()) == 2 and r.split()[1].startswith(under + "/")]


@pytest.fixture
def no_docker(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """An environment whose `docker` logs its arguments and fails."""
    shim, log = tmp_path / "bin", tmp_path / "docker-calls.log"
    shim.mkdir()
    (shim / "docker").write_text(f"#!/bin/sh\necho \"docker $*\" >> {log}\nexit 97\n")
    (shim / "docker").chmod(0o755)
    yield {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}, log


def test_the_lab_user_logs_in_over_ssh_with_the_clusters_key(site_file: Path, client: Client) -> None:
    r = ssh(site_file, "id -un; hostname; sinfo -h -o %P | head -n1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == [client.facts.lab_user, client.facts.login]
    site = load(site_file)
    assert (site.host, site.port, site.user) == ("127.0.0.1", client.facts.ssh_port, client.facts.lab_user)
    assert "docker" not in site_file.read_text() and "compose" not in site_file.read_text()


def test_no_password_no_root_no_other_user_no_forwarding(site_file: Path, client: Client) -> None:
    r = ssh(site_file, "true", "-o", "PubkeyAuthentication=no", "-o",
            "PreferredAuthentications=password,keyboard-interactive")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, r.stderr
    for user in ("root", client.facts.other_user):
        r = ssh(site_file, "true", user=user)
        assert r.returncode == 255 and "Permission denied" in r.stderr, (user, r.stderr)
    # No tunnel into the cluster's network (the accounting database, slurmdbd), not even to sshd itself.
    for target in ("db:3306", "127.0.0.1:22"):
        r = ssh(site_file, "", "-W", target)
        assert r.returncode == 255 and "stdio forwarding failed" in r.stderr, (target, r.stderr)
    assert containers.compose("port", "login", "22").strip() == f"127.0.0.1:{client.facts.ssh_port}", "loopback only"


@pytest.mark.cost(215)
def test_the_site_check_passes_over_ssh_alone(site_file: Path, no_docker, client: Client) -> None:
    env, calls = no_docker
    started = time.monotonic()
    r = cli("site", "check", str(site_file), env=env, timeout=1800)
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    each = [int(s) for s in re.findall(r"^  \S+: \d+/\d+ checks passed in (\d+) s$", r.stdout, re.M)]
    assert len(each) == 7 and sum(each) > took, f"the proofs ran side by side: {each} in {took:.0f} s"
    assert not calls.exists(), f"the site path ran docker: {calls.read_text()}"
    # Its versions, read over SSH, and the line that brings the same up here.
    release, stack = releases.named(client.facts.slurm), client.facts.stack
    assert re.search(rf"^site versions: slurm {re.escape(release.packaged)}, snakemake {re.escape(stack.snakemake)}, "
                     rf"snakemake-executor-plugin-slurm {re.escape(stack.slurm_plugin)}, ", r.stdout, re.M), r.stdout
    up = " ".join(["minihpc up --slurm", release.slurm, stack.flags()]).rstrip()
    assert f"\nreproduce here: {up}\n" in r.stdout, r.stdout[:2000]
    proofs = PROOF_DIR / "site"
    checks = (proofs / "checks.txt").read_text()
    assert "[FAIL]" not in checks and checks.count("[PASS]") >= 30, checks[:3000]
    for core in ("core1", "core2", "core4", "core5", "lag", "limits"):
        assert f"] {core}: " in checks, core
    for proof in ("core1.slurm.run", "core1.sacct", "core2.flaky", "core4.unit-tests", "core5.drift", "site.lag",
                  "site.limits"):
        assert (proofs / f"{proof}.txt").is_file(), proof
    # minihpc enforces both (cgroup-less: jobacct_gather's kill, and the time limit): the check found them so.
    assert "[PASS] limits: memory over the request: enforced" in checks, checks[-800:]
    assert "[PASS] limits: time over the limit: enforced: TIMEOUT" in checks, checks[-800:]
    assert "removed: " in (proofs / "cleanup.txt").read_text()
    session = (proofs / "cleanup.txt").read_text().split("removed: ")[1].split()[0]
    assert session.startswith(load(site_file).work_dir + "/check-")
    assert client.sh(f"test -e {q(session)}").rc != 0, "the check's directory is removed"
    assert checks_jobs(client, session) == [], "no job of the check is left"


@pytest.mark.parametrize(("change", "field", "fix"), [
    (("  port: ", "  port: 1\n  #"), "ssh.host", "check ssh.host, ssh.port"),
    (("  partition: ", "  partition: nosuch\n  #"), "slurm.partition", "the site's partitions: "),
    (("  account: ", "  account: nosuch\n  #"), "slurm.account", "give one of your accounts"),
    (("work_dir: ", "work_dir: /shared/site-check-others\n#"), "work_dir", "give a directory of yours"),
    (("work_dir: ", "work_dir: /shared/site-check-link\n#"), "work_dir", "give the real path"),
    (("slurm:", "slurm:\n  partitoin: short"), "slurm.partitoin", "known keys under slurm"),
])
def test_a_bad_site_file_is_one_error_naming_the_field_and_nothing_is_submitted(
        site_file: Path, cluster: Cluster, client: Client, tmp_path: Path, change, field, fix) -> None:
    other = cluster.host("login", client.facts.other_user)
    run_ok(other, "mkdir -p -m 755 /shared/site-check-others")
    run_ok(cluster.as_user(), "ln -sfn /tmp /shared/site-check-link")
    # A work directory of its own: the site checks beside it submit jobs of the same name in theirs.
    good = load(site_file).work_dir
    own = f"{good}-bad-{tmp_path.name}"
    bad = tmp_path / "site.yaml"
    bad.write_text(site_file.read_text().replace(f"work_dir: {good}\n", f"work_dir: {own}\n").replace(*change, 1))
    since = client.now()
    r = cli("site", "check", str(bad), timeout=300)
    errors = [x for x in r.stderr.splitlines() if x.startswith("minihpc: error:")]
    assert r.returncode == 2 and len(errors) == 1, r.stdout + r.stderr
    assert f": {field}: " in errors[0] and fix in errors[0], errors[0]
    assert "running core1" not in r.stdout
    # Nothing submitted: no job of the lab user's under the work_dir the bad file names (or its own), and no
    # job of a site check's name anywhere but under the good work_dir, where the one site check beside this
    # works (a pre-flight job that lost its --test-only would run from the home directory).
    named = re.search(r"^work_dir: (\S+)", bad.read_text(), re.M).group(1)
    jobs = [j for j in client.sacct(since, ("JobID", "JobName", "WorkDir"))
            if any(j["WorkDir"] == d or j["WorkDir"].startswith(d + "/") for d in (own, named))
            or j["JobName"] == JOB_NAME and not j["WorkDir"].startswith(good + "/")]
    assert jobs == [], f"the refused check submitted: {jobs}"
    assert client.sh(f"test -e {q(own)}").rc != 0, "the refused check made its work directory"


# `python -m minihpc ARGS` with Python's own SIGINT handler, whatever this process inherited.
WITH_CTRL_C = ("import runpy, signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
               "sys.argv[0] = 'minihpc'\nrunpy.run_module('minihpc', run_name='__main__')\n")


def test_ctrl_c_cancels_the_checks_jobs_and_removes_its_directory(site_file: Path, client: Client,
                                                                   tmp_path: Path) -> None:
    # A work directory of its own: the whole check runs beside, with jobs of the same name.
    work = load(site_file).work_dir + "-ctrl-c"
    site = tmp_path / "site.yaml"
    site.write_text(site_file.read_text().replace(f"work_dir: {load(site_file).work_dir}\n", f"work_dir: {work}\n"))
    assert load(site).work_dir == work
    # SIGINT handled as a terminal leaves it (a suite started in the background passes it on ignored).
    proc = subprocess.Popen([sys.executable, "-c", WITH_CTRL_C, "site", "check", str(site), "--only", "limits"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        eventually(lambda: len(checks_jobs(client, work)) == 2, timeout=120, interval=0.5,
                   what="the limits proof's two jobs")
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert "interrupted: cancelling the check's jobs and removing its directory" in err, err
    session = err.split("removed: ")[1].split()[0]
    assert session.startswith(work + "/check-"), err
    eventually(lambda: checks_jobs(client, work) == [], timeout=60, what="the check's jobs to go")
    assert client.sh(f"test -e {q(session)}").rc != 0, "its directory is removed"
    client.sh(f"rmdir {q(work)}")


@pytest.mark.cost(55)
def test_run_site_runs_your_workflow_there_with_its_requirements(site_file: Path, no_docker, client: Client,
                                                                 tmp_path: Path) -> None:
    import json
    import shutil
    env, calls = no_docker
    wf = tmp_path / "pyreqs"
    shutil.copytree(ROOT / "tests/workflows/pyreqs", wf)
    work = load(site_file).work_dir
    try:
        r = cli("run", "--site", str(site_file), "--name", "test-site-run", "--fresh", str(wf), env=env,
                timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        assert not calls.exists(), f"run --site ran docker: {calls.read_text()}"
        report = json.loads((wf / ".minihpc/report.json").read_text())
        assert report["remote"] == f"{work}/test-site-run"
        assert report["environment"]["path"].startswith(f"{work}/.envs/py-"), report["environment"]
        assert {(j["state"], j["node"] in client.facts.nodes) for j in report["jobs"]} == {("COMPLETED", True)}
        # minihpc's own profile took the site file's partition and limits.
        assert {(j["partition"], j["time_limit"], j["req_mem"]) for j in report["jobs"]} == {("short", "00:02:00",
                                                                                            "500M")}
    finally:
        client.sh(f"chmod -R u+w {q(work)}/.envs 2>/dev/null; rm -rf {q(work)}/.envs {q(work)}/test-site-run")


# Side by side: the delay is on the check's probe files only (it writes them at the top of its session's
# directory, WORK_DIR/check-*/lag-*); it takes turns with the EIO proofs, which set the NFS profile too
# (tests/scheduling.py).
@pytest.mark.cost(40)
def test_the_lag_proof_measures_the_lag_there_is(site_file: Path, client: Client) -> None:
    """Under the NFS profile lag-10 (set here, as the site's own filesystem would be), the check measures
    about 10 s and says what --latency-wait covers it."""
    probes = client.facts.on_mount(load(site_file).work_dir) + "/check-*/lag-*"
    client.set_nfs_profile("lag-10", "--set", f"delay_path={probes}")
    try:
        r = cli("site", "check", str(site_file), "--only", "lag", timeout=300)
    finally:
        client.set_nfs_profile("off")
    assert r.returncode == 0, r.stdout + r.stderr
    lags = [float(x.split("lag ")[-1].rstrip(" s")) for x in (PROOF_DIR / "site/site.lag.txt").read_text().splitlines()
            if x.startswith("job ")]
    assert len(lags) == 3 and all(9 <= x <= 13 for x in lags), lags
    assert "the lag implies --latency-wait 2" in r.stdout, r.stdout
