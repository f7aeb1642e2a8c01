"""The software a site gives through environment modules (Lmod), and MPI
jobs across nodes through SLURM: as the lab user, on the login node and in
jobs on every compute node (cluster/site_modules.py writes the tree)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Cluster, cli, q, run_ok

from minihpc import ROOT

SITE_MODULES = ("mpi-demo", "mpi4py", "openmpi", "scipy-stack", "snakemake")
JOB = "-A lab -p short -t 2"
WORKFLOW = ROOT / "tests/workflows/modules"
ADDED = "test-cowsay/1.0"
SHARE = "/opt/site/local"



def batch(cluster: Cluster, options: str, script: str) -> tuple[str, str]:
    """A bash batch script (`module` is a bash function: --wrap's /bin/sh,
    dash on Debian, has none, as on a Debian site) run with sbatch -W as the
    lab user, its output kept on the shared filesystem: (the job's ID, what
    it printed)."""
    where = f"{cluster.facts.shared}/test-modules"
    out = run_ok(cluster.as_user(), f"mkdir -p {where} && printf '#!/bin/bash\\n%s\\n' {q(script)} | "
                                    f"sbatch -W --parsable {JOB} {options} -o {where}/%j.out")
    job = out.split()[-1].split(";")[0]
    return job, run_ok(cluster.as_user(), f"cat {where}/{job}.out; rm -f {where}/{job}.out")


def module_env(cluster: Cluster, loads: str) -> dict[str, str]:
    """The lab user's environment on the login node after `loads` (shell
    commands), Lmod's own bookkeeping aside."""
    out = run_ok(cluster.as_user(), f"{loads} >/dev/null 2>&1; env -0")
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return {k: v for k, v in env.items()
            if not (k.startswith(("LMOD", "__LMOD", "_ModuleTable", "BASH_FUNC_")) or k in ("LOADEDMODULES",
                                                                                            "_LMFILES_", "_"))}


def test_module_avail_lists_the_sites_modules_each_with_a_version_and_a_default(cluster: Cluster) -> None:
    out = run_ok(cluster.as_user(), "module -t avail 2>&1")
    names = {line.split("/")[0] for line in out.split() if "/" in line and not line.startswith("/")}
    assert set(SITE_MODULES) <= names, out
    for name in SITE_MODULES:
        assert re.search(rf"^{name}/[\w.]+(\(default\))?$", out, re.M), (name, out)
    spider = run_ok(cluster.as_user(), "module spider mpi4py 2>&1")
    assert "mpi4py:" in spider and "MPI for Python" in spider, spider


def test_each_module_sets_only_its_paths_and_loading_them_all_breaks_nothing(cluster: Cluster) -> None:
    before = module_env(cluster, "module purge")
    after = module_env(cluster, "module purge; module load mpi-demo scipy-stack snakemake")
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # (The openmpi module also names the nodes' network for Open MPI: OMPI_MCA_btl_tcp_if_include.)
    assert changed <= {"PATH", "PYTHONPATH", "MANPATH", "MPI_HOME", "OMPI_MCA_btl_tcp_if_include"}, {
        k: (before.get(k), after.get(k))
                                                                       for k in changed}
    listed = run_ok(cluster.as_user(), "module load mpi-demo 2>&1; module -t list 2>&1")
    assert {line.split("/")[0] for line in listed.split() if "/" in line} == {"mpi-demo", "mpi4py", "openmpi"}, \
        listed
    # Everything importable together, and Snakemake still the cluster's own.
    out = run_ok(cluster.as_user(), "module load mpi-demo scipy-stack 2>/dev/null; python3 -c 'import mpi4py, "
                                    "matplotlib, numpy, pandas, snakemake; print(matplotlib.__version__)'; "
                                    "snakemake --version")
    assert re.fullmatch(r"[\d.]+\n9\.[\d.]+\n", out), out


def test_without_its_module_there_is_no_mpiexec_and_after_a_purge_snakemake_stays(cluster: Cluster) -> None:
    r = cluster.as_user().run("module purge; command -v mpiexec || echo none")
    assert r.stdout.strip() == "none", r.stdout
    assert run_ok(cluster.as_user(), "module load openmpi 2>/dev/null; command -v mpiexec").strip().startswith(
        "/opt/site/software/openmpi/")
    assert run_ok(cluster.as_user(), "module purge; snakemake --version").startswith("9.")


def test_modules_load_in_a_batch_job_on_every_node_and_are_not_the_users_to_change(cluster: Cluster) -> None:
    for node in cluster.compute_names:
        _, out = batch(cluster, f"-w {node} --mem=200M", "module load mpi4py && python3 -c 'import mpi4py; "
                                                          "print(mpi4py.__version__)' && hostname")
        assert re.fullmatch(rf"[\d.]+\n{node}\n", out), (node, out)
    r = cluster.as_user().run("touch /opt/site/modulefiles/snakemake/mine.lua")
    assert r.rc != 0, "a user wrote into the site's module tree"


# Open MPI 5.0.7's crash in MPI_Init when a 2-node step starts beside another (docs/modules.md, "Known"):
# a launch that died of it is launched once more, and says so; any other failure fails the test.
INIT_CRASH = re.compile(r"Caught signal 11 .*\n(?:.*\n)*?.*mca_pml_ob1_recv_frag_callback_match(?:.*\n)*?"
                        r".*ompi_mpi_init")


def launched(cluster: Cluster, cmd: str) -> str:
    """`cmd` (an MPI launch) as the lab user: its output, once more if it died of INIT_CRASH."""
    r = cluster.as_user().run(cmd)
    if r.rc != 0 and INIT_CRASH.search(r.stdout + r.stderr):
        print(f"launched again after Open MPI's MPI_Init crash: {cmd}")
        r = cluster.as_user().run(cmd)
    assert r.rc == 0, f"{cmd!r} failed with {r.rc}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def mpi_pi(cluster: Cluster, launch: str) -> dict:
    """Run mpi-pi as `launch` says (srun ...): its one JSON line."""
    out = launched(cluster, f"module load mpi-demo 2>/dev/null; {launch} 2>&1")
    lines = [x for x in out.splitlines() if x.startswith("{")]
    assert len(lines) == 1, out  # one rank 0: not N unrelated copies
    return json.loads(lines[0])


@pytest.mark.cost(30)
def test_mpi_ranks_run_on_both_nodes_through_srun_and_mpiexec_and_without_pmix_they_are_copies(
        cluster: Cluster) -> None:
    # One CPU of each of two nodes at most: side by side with other proofs, never the whole cluster.
    nodes = cluster.compute_names[:2]
    for ranks in (1, 2):
        result = mpi_pi(cluster, f"srun --mpi=pmix {JOB} --mem-per-cpu=200M -N {ranks} -n {ranks} mpi-pi")
        assert result["ranks"] == ranks and len(result["rank_nodes"]) == ranks, result
        assert result["error"] < 1e-9, result
    assert sorted(result["rank_nodes"]) == sorted(nodes), result
    # The mistake a site sees most: the program started without MPI's launch (--mpi=none here; a program
    # run bare, outside srun or mpiexec, the same): N unrelated copies, each rank 0 of 1, each the whole work.
    out = run_ok(cluster.as_user(), f"module load mpi-demo 2>/dev/null; srun --mpi=none {JOB} --mem-per-cpu=200M "
                                    "-N 2 -n 2 mpi-pi")
    copies = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [c["ranks"] for c in copies] == [1, 1], out
    # mpiexec inside an allocation: it starts its ranks through SLURM on every node given.
    job, out = batch(cluster, "-N 2 -n 2 --mem-per-cpu=200M", "module load mpi-demo && mpiexec mpi-pi")
    result = json.loads(next(x for x in out.splitlines() if x.startswith("{")))
    assert result["ranks"] == 2 and sorted(result["rank_nodes"]) == sorted(nodes), result
    rows = run_ok(cluster.as_user(), f"sacct -n -P -X -j {job} -o NTasks,NNodes,NodeList,State; "
                                     f"sacct -n -P -j {job} -o JobID,NTasks,NodeList")
    # The allocation on both nodes; its steps on both too: the batch step on the first (mpiexec and its
    # ranks there), a step srun started on the other (Open MPI's daemon, with its ranks there).
    assert re.search(r"^\|2\|c\[1-2\]\|COMPLETED$", rows, re.M), rows
    steps = dict(re.findall(rf"^{job}\.(\w+)\|1\|(c\d+)$", rows, re.M))
    assert sorted(steps.values()) == sorted(nodes) and "batch" in steps, rows


@pytest.fixture(scope="module")
def added(cluster: Cluster) -> Iterator[subprocess.CompletedProcess[str]]:
    """A module an administrator added from pip requirements (removed after)."""
    cli("modules", "remove", ADDED, merged=True)  # an earlier run's, if it was stopped: the share outlives `down`
    yield cli("modules", "add", ADDED, "--requirements", str(WORKFLOW / "cowsay.txt"), merged=True)
    cli("modules", "remove", ADDED, merged=True)


@pytest.mark.cost(45)
def test_a_module_added_from_requirements_is_on_every_node_at_once_and_no_users_to_change(
        cluster: Cluster, added: subprocess.CompletedProcess[str]) -> None:
    assert added.returncode == 0, added.stdout
    assert re.search(rf"^added module {ADDED} in [\d.]+ s: cowsay==6.1;", added.stdout, re.M), added.stdout
    assert re.search(rf"^{ADDED}\s+added\s+cowsay==6\.1 ", cli("modules", "list", merged=True).stdout, re.M)
    users = (cluster.lab_user, cluster.facts.other_user)
    for user in users:
        assert ADDED in run_ok(cluster.host("login", user), "module -t avail test-cowsay 2>&1").split()
    # In a job on each node: importable, its command on PATH (the share, read-only there).
    for node in cluster.compute_names:
        _, out = batch(cluster, f"-w {node} --mem=200M", "module load test-cowsay && python3 -c 'import cowsay; "
                                                         "print(cowsay.__file__)' && cowsay -t moo | grep -c moo "
                                                         "&& hostname")
        assert re.fullmatch(rf"{SHARE}/software/{ADDED}/lib/python3\.\d+/site-packages/cowsay/__init__\.py\n1\n"
                            rf"{node}\n", out), (node, out)
    # Root's: no user adds, changes or removes a module or its files, on the login node where it is built;
    lib = f"{SHARE}/software/{ADDED}/lib"
    for user in users:
        for attempt in (f"touch {SHARE}/modulefiles/test-cowsay/2.0.lua", f"rm -f {SHARE}/modulefiles/{ADDED}.lua",
                        f"mkdir {SHARE}/modulefiles/mine", f"echo 'import os' >> {lib}/python3*/site-packages/"
                        "cowsay/__init__.py", f"mv {SHARE}/software/{ADDED} /tmp/x", f"ln -s /tmp {SHARE}/x",
                        f"exec 9<{SHARE}/.lock && flock -n 9"):  # (a lock held would stall every add)
            r = cluster.host("login", user).run(attempt)
            assert r.rc != 0, (user, attempt, r.stdout)
    assert cluster.host("login").run(f"test -f {SHARE}/modulefiles/{ADDED}.lua").rc == 0
    # and on a compute node not even root can: the share is mounted read-only there.
    r = cluster.host(cluster.compute_names[0]).run(f"touch {SHARE}/modulefiles/x.lua")
    assert r.rc != 0 and "Read-only file system" in r.stdout + r.stderr, r


def test_a_bad_module_name_or_one_that_would_shadow_is_refused_and_nothing_is_built(
        cluster: Cluster, added: subprocess.CompletedProcess[str]) -> None:
    assert added.returncode == 0, added.stdout
    login = cluster.host("login")
    listing = f"find {SHARE} /root -maxdepth 5 | sort"
    before = run_ok(login, listing)
    req = str(WORKFLOW / "cowsay.txt")
    for args, says in ((["add", "x;touch /tmp/pwned", "-r", req], "is not a module name"),
                       (["add", "../../etc/profile.d/x", "-r", req], "is not a module name"),
                       (["add", "snakemake/99", "-r", req], "is one of the site's own modules"),
                       (["add", ADDED, "-r", req], "is already there"),
                       (["remove", "snakemake/9.27.1"], "is one of the site's own modules"),
                       (["remove", "test-cowsay/9"], "no added module test-cowsay/9")):
        r = cli("modules", *args, merged=True)
        assert r.returncode == 2 and says in r.stdout, (args, r.stdout)
    assert run_ok(login, listing) == before
    assert not login.exists("/tmp/pwned")


def test_a_user_cannot_shadow_a_module_for_another_nor_change_what_they_load(cluster: Cluster) -> None:
    alice, student = cluster.host("login", cluster.facts.other_user), cluster.as_user()
    # Her own tree, first in her MODULEPATH: a `snakemake` that would run her code. For her alone.
    mine = run_ok(alice, "rm -rf ~/mods && mkdir -p ~/mods/snakemake && printf 'prepend_path(\"PATH\", "
                         "\"/tmp/alice-bin\")\\n' > ~/mods/snakemake/99.lua && module use ~/mods && "
                         "module load snakemake 2>&1 && module -t list 2>&1")
    assert "snakemake/99" in mine, mine
    theirs = run_ok(student, "module load snakemake 2>&1; module -t list 2>&1; echo \"$MODULEPATH\"; "
                             "command -v snakemake")
    assert re.search(r"^snakemake/9\.[\d.]+$", theirs, re.M) and "99" not in theirs and "alice" not in theirs, theirs
    # What every shell reads to find modules is root's.
    for path in ("/etc/profile.d/lmod.sh", "/opt/site/modulefiles/snakemake/x.lua",
                 "/usr/share/lmod/lmod/init/bash", f"{SHARE}/modulefiles/snakemake.lua"):
        assert alice.run(f"touch {path}").rc != 0, path
    run_ok(alice, "rm -rf ~/mods")


@pytest.mark.cost(150)  # two runs through SLURM, 85 s alone, 190 s beside the others
def test_an_envmodules_mpi_rule_runs_its_ranks_across_nodes_through_the_plugin_and_needs_the_flag(
        cluster: Cluster, tmp_path: Path) -> None:
    wf = tmp_path / "wf"
    shutil.copytree(WORKFLOW, wf)
    run = ("run", str(wf), "--name", "test-modules-run", "--fresh", "--profile", str(ROOT / "profiles/slurm"),
           "--fetch", "results/pi.json", "--fetch", "logs/pi.log")
    # With the flag: Snakemake loads each rule's modules. One Lmod does not know fails nothing: Snakemake runs
    # `module load ...; COMMAND` and the command runs without it (minihpc names the job from its log).
    # (--retries 1: a rank may die of Open MPI's MPI_Init crash beside another MPI step, docs/modules.md.)
    r = cli(*run, "--", "all", "results/unknown.txt", "--sdm", "env-modules", "--retries", "1", merged=True)
    report = json.loads((wf / ".minihpc/report.json").read_text())
    jobs = {j["rule"]: j for j in report["jobs"]}
    assert r.returncode == 0 and [j["state"] for j in jobs.values()] == ["COMPLETED"] * 2, r.stdout  # each's last
    assert re.search(rf"job {jobs['unknown']['job_id']} \(rule unknown\) COMPLETED, but Lmod could not load",
                     r.stdout), r.stdout
    assert not any(f"job {jobs['pi']['job_id']} " in n for n in report["notices"]), report["notices"]
    result = json.loads((wf / "results/pi.json").read_text())
    assert result["ranks"] == 2 and sorted(result["rank_nodes"]) == sorted(cluster.compute_names[:2]), result
    # The plugin asked SLURM for the ranks; srun ran them as one step on both nodes.
    rows = run_ok(cluster.as_user(), f"sacct -n -P -j {jobs['pi']['job_id']} -o JobID,NTasks,NNodes,NodeList,State")
    assert re.search(rf"^{jobs['pi']['job_id']}\.0\|2\|2\|c\[1-2\]\|COMPLETED$", rows, re.M), rows
    # Without it, Snakemake ignores `envmodules:` (minihpc says so first) and the program is not there.
    shutil.rmtree(wf / "results")  # fetched back above: the workflow directory is what the next run syncs
    r = cli(*run, merged=True)
    assert r.returncode == 1 and "rule(s) pi, unknown declare envmodules: (" in r.stdout, r.stdout
    report = json.loads((wf / ".minihpc/report.json").read_text())
    assert [j["state"] for j in report["jobs"] if j["rule"] == "pi"] == ["FAILED"], report["jobs"]
    assert "mpi-pi" in (wf / "logs/pi.log").read_text(), (wf / "logs/pi.log").read_text()
