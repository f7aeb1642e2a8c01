"""`minihpc run` gives a workflow its Python requirements the way a site
does: an environment on the shared filesystem every node sees
(tests/workflows/pyreqs needs ujson, which the cluster's environment lacks).
Without it the jobs fail with the import error in the report; with it they
run on compute nodes; the second run reuses it; a requirement that cannot
be had leaves nothing behind; nobody but the lab user can write to it; two
runs making the same one at once make it once."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import Cluster, cli, q, run_ok

from minihpc import pyenv
from minihpc.cluster import Cluster as Client

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "tests/workflows/pyreqs"
NAME = "test-pyreqs"



def report(wf: Path) -> dict:
    return json.loads((wf / ".minihpc/report.json").read_text())


def drop(client: Client, path: str) -> None:
    """Remove an environment the way `minihpc env remove` does, without its
    refusal while any job of the lab user's is queued (other tests' run
    beside these)."""
    client.sh(f"chmod -R u+w {q(path)} 2>/dev/null; rm -rf {q(path)}")


# These tests are the only ones that use the cluster's environments directory
# (a site's is its own, under its work_dir), and they take turns: a file's
# tests run in one worker, in order. They judge, and move aside, that directory.
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, client: Client) -> Iterator[dict]:
    """Three runs of the workflow: without its requirements (a copy of its
    own, beside the others), with them (made, over a half-built leftover of
    the same name), and again (reused)."""
    wf = tmp_path_factory.mktemp("pyreqs") / "pyreqs"
    bare = tmp_path_factory.mktemp("pyreqs-bare") / "pyreqs"
    for copy in (wf, bare):
        shutil.copytree(WORKFLOW, copy)
    name = pyenv.name_of(pyenv.requirements(wf, [], [], False), pyenv.base(client))
    out: dict = {"wf": wf, "name": name, "path": f"{pyenv.envs_dir(client)}/{name}"}
    drop(client, out["path"])
    with ThreadPoolExecutor(1) as pool:
        without = pool.submit(cli, "run", str(bare), "--name", f"{NAME}-bare", "--fresh", "--no-requirements")
        # A build killed half-way leaves the directory without its metadata: never reused.
        run_ok(cluster.as_user(), f"mkdir -p {q(out['path'])}/lib && echo stale > {q(out['path'])}/lib/stale.py")
        out["made"] = cli("run", str(wf), "--name", NAME, merged=True)
        out["made_report"] = report(wf)
        out["reused"] = cli("run", str(wf), "--name", NAME, "--requirements", "requirements.txt")
        out["reused_report"] = report(wf)
        out["without"] = without.result()
    out["without_report"], out["without_md"] = report(bare), (bare / ".minihpc/report.md").read_text()
    yield out
    client.sh(f"rm -rf {q(client.facts.shared)}/{NAME} {q(client.facts.shared)}/{NAME}-bare")
    drop(client, out["path"])


@pytest.mark.cost(100)  # the module's three runs
def test_without_its_requirements_the_jobs_fail_with_the_import_error_in_the_report(runs) -> None:
    r, rep = runs["without"], runs["without_report"]
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr
    assert rep["environment"]["name"] == "the cluster's own" and rep["environment"]["path"] == "/opt/minihpc/venv"
    errors = {j["rule"]: j["error"] for j in rep["jobs"]}
    assert set(errors) == {"encode", "shell_python"}, rep["jobs"]
    for rule, error in errors.items():
        assert "ModuleNotFoundError: No module named 'ujson'" in error, (rule, error)
    md = runs["without_md"]
    assert "Why jobs failed" in md and "No module named 'ujson'" in md


def test_with_them_the_jobs_run_on_compute_nodes_in_the_shared_environment(runs, client: Client) -> None:
    r, rep, path = runs["made"], runs["made_report"], runs["path"]
    assert r.returncode == 0, r.stdout[-3000:]
    assert "minihpc: requirements: requirements.txt at the workflow's root (--no-requirements runs without it)" \
        in r.stdout, "the default file is picked up and said so"
    assert f"minihpc: making Python environment {runs['name']}" in r.stdout
    env = rep["environment"]
    assert env["path"] == path and env["reused"] is False
    assert any(x.startswith("ujson==") for x in env["own"]), env["own"]
    assert any(x.startswith("snakemake==") for x in env["freeze"]), "layered over the cluster's Snakemake"
    assert {j["state"] for j in rep["jobs"]} == {"COMPLETED"} and len(rep["jobs"]) == 2, rep["jobs"]
    # The script: rule and a shell rule's plain `python` both ran the environment's Python, on a compute node.
    remote = f"{client.facts.shared}/{NAME}"
    encoded = json.loads(client.sh(f"cat {remote}/results/encoded.json").out)
    assert encoded["host"] in client.facts.nodes and encoded["python"] == f"{path}/bin/python", encoded
    host, python, _ = client.sh(f"cat {remote}/results/shell.txt").out.split()
    assert host in client.facts.nodes and python == f"{path}/bin/python"
    # The half-built leftover of the same name was not reused: made again from scratch.
    assert client.sh(f"test -e {q(path)}/lib/stale.py").rc != 0


def test_the_second_run_reuses_it(runs) -> None:
    r, rep = runs["reused"], runs["reused_report"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert f"minihpc: reusing Python environment {runs['name']}" in r.stderr
    assert "making Python environment" not in r.stderr
    assert rep["environment"]["reused"] is True
    assert rep["environment"]["made"] == runs["made_report"]["environment"]["made"]
    assert "Nothing to be done" in r.stdout and rep["jobs"] == [], "the outputs of the run before are kept"
    listed = cli("env", "list")
    assert runs["name"] in listed.stdout and "ujson==" in listed.stdout, listed.stdout


def test_conda_and_envmodules_directives_are_answered_before_anything_is_submitted(runs) -> None:
    out = runs["made"].stdout
    conda = out.index("minihpc: rule(s) encode declare conda: environments (\"envs/encode.yaml\"), which this "
                      "cluster does not have")
    modules = out.index("minihpc: rule(s) shell_python declare envmodules: (\"python/3.13\"), which Snakemake "
                        "loads only when asked: without --sdm env-modules")
    assert max(conda, modules) < out.index("has been submitted with SLURM jobid"), "said before any submission"
    assert f"runs these rules in the run's Python environment ({runs['name']}" in out
    assert len(runs["made_report"]["notices"]) == 2


def test_the_environment_is_read_by_the_lab_user_on_every_node_and_written_by_nobody_else(runs, cluster: Cluster,
                                                                                        client: Client) -> None:
    path = runs["path"]
    site = f"{path}/lib/python3.13/site-packages"
    for node in client.facts.client_nodes:
        user = cluster.host(node, client.facts.lab_user)
        assert run_ok(user, f"{q(path)}/bin/python -c 'import ujson, snakemake; print(ujson.__name__)'") == "ujson\n"
        assert user.run(f"touch {q(site)}/ujson.py").rc != 0, f"{node}: read-only even for its owner"
    other = cluster.host("login", client.facts.other_user)
    for attack in (f"touch {q(path)}/x", f"echo 'import os' > {q(site)}/evil.pth", f"chmod -R u+w {q(path)}",
                   f"rm -rf {q(path)}", f"mv {q(path)} {q(path)}-moved",
                   f"mkdir {q(pyenv.envs_dir(client))}/py-000000000000"):
        assert other.run(attack).rc != 0, f"{client.facts.other_user} could: {attack}"
    assert run_ok(other, f"ls {q(site)}").count("ujson") >= 1, "others may read it, as a site's are"
    assert client.sh(f"stat -c '%U %a' {q(pyenv.envs_dir(client))}").out.split() == [client.facts.lab_user, "755"]


def test_a_requirement_that_cannot_be_had_is_one_error_and_leaves_nothing(runs, client: Client) -> None:
    before = cli("env", "list").stdout
    there = client.sh(f"ls -A {q(pyenv.envs_dir(client))}").out.split()
    for pip in ("minihpc-no-such-package-zz", 'minihpc-no-such-package-zz; python_version >= "3.12"'):
        r = cli("run", str(runs["wf"]), "--name", NAME, "--pip", pip)
        assert r.returncode == 2, r.stdout + r.stderr
        errors = [x for x in r.stderr.splitlines() if x.startswith("minihpc: error:")]
        assert len(errors) == 1 and "minihpc-no-such-package-zz cannot be had" in errors[0], r.stderr
        assert "No matching distribution found for minihpc-no-such-package-zz" in errors[0]
        assert "SNAKEMAKE" not in r.stdout, "nothing ran"
    assert cli("env", "list").stdout == before
    left = client.sh(f"ls -A {q(pyenv.envs_dir(client))}").out.split()
    assert runs["name"] in there and [x for x in left if not x.startswith(".lock-")] == \
        [x for x in there if not x.startswith(".lock-")], f"no half-built environment or staged wheels: {left}"


def test_an_environments_directory_another_user_made_is_refused(runs, cluster: Cluster, client: Client) -> None:
    envs = pyenv.envs_dir(client)
    aside = f"{envs}-aside"
    run_ok(cluster.as_user(), f"mv {q(envs)} {q(aside)}")
    try:
        run_ok(cluster.host("login", client.facts.other_user), f"mkdir -m 777 {q(envs)}")
        r = cli("run", str(runs["wf"]), "--name", NAME, "--pip", "ujson")
        assert r.returncode == 1 and f"{envs} is owned by {client.facts.other_user}" in r.stderr, r.stderr
        assert "SNAKEMAKE" not in r.stdout
    finally:
        cluster.host("login", client.facts.other_user).run(f"rm -rf {q(envs)}")
        run_ok(cluster.as_user(), f"mv {q(aside)} {q(envs)}")


def test_env_remove_checks_every_name_first(runs) -> None:
    r = cli("env", "remove", runs["name"], "py-000000000000")
    assert r.returncode == 2 and "no environment py-000000000000; see minihpc env list" in r.stderr, r.stderr
    assert runs["name"] in cli("env", "list").stdout, "nothing removed"
    r = cli("env", "remove", "../etc")
    assert r.returncode == 2 and "is not an environment name" in r.stderr


def test_two_runs_making_the_same_environment_at_once_make_it_once(client: Client) -> None:
    """Both succeed with the one environment: the build that got its lock
    second found it made and left it alone (the directory the first one
    returned is the one still there, its metadata unchanged), and neither
    left staging behind."""
    req = pyenv.requirements(WORKFLOW, [], ["ujson>=5.0"], False)  # not the module's: made here from nothing
    assert req is not None
    name = pyenv.name_of(req, pyenv.base(client))
    envs, path = pyenv.envs_dir(client), f"{pyenv.envs_dir(client)}/{name}"
    drop(client, path)
    got: dict[int, pyenv.Env | BaseException] = {}
    seen: dict[int, str] = {}  # each run's view of the environment, read on the cluster as it returned

    def one(i: int) -> None:
        try:
            got[i] = pyenv.provide(client, req, say=lambda _: None)
            seen[i] = client.sh(f"stat -c %i {q(path)} && cat {q(path)}/{pyenv.META}").out
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            got[i] = e

    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        # A failure in full (pip's own words), not the Env beside it, which pytest's repr would cut short.
        assert all(isinstance(e, pyenv.Env) for e in got.values()) and len(got) == 2, \
            "\n".join(f"run {i}: {'made or reused it' if isinstance(e, pyenv.Env) else e}" for i, e in got.items())
        now = client.sh(f"stat -c %i {q(path)} && cat {q(path)}/{pyenv.META}").out
        assert seen[0] == seen[1] == now, "the environment one run returned was replaced by the other's build"
        meta = json.loads(now.split("\n", 1)[1])
        assert meta["name"] == name and any(x.startswith("ujson==") for x in meta["own"]), meta
        left = client.sh(f"ls -A {q(envs)}").out.split()
        assert name in left and f".lock-{name}" in left, left
        assert not [x for x in left if x.startswith((f".build-{name}", ".wheels-"))], f"staging left: {left}"
        assert client.sh(f"{q(path)}/bin/python -c 'import ujson'").rc == 0
        assert sorted(e.reused for e in got.values()) == [False, True]  # type: ignore[union-attr]
    finally:
        client.sh(f"chmod -R u+w {q(path)} 2>/dev/null; rm -rf {q(path)} {q(envs)}/.lock-{name}")
