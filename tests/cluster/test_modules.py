"""The software a site gives through environment modules (Lmod), and MPI
jobs across nodes through SLURM: as the lab user, on the login node and in
jobs on every compute node (cluster/site_modules.py writes the tree)."""

from __future__ import annotations

import json
import re

import pytest
from support import Cluster, q, run_ok

SITE_MODULES = ("mpi-demo", "mpi4py", "openmpi", "scipy-stack", "snakemake")
JOB = "-A lab -p short -t 2"


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
    assert changed <= {"PATH", "PYTHONPATH", "MANPATH", "MPI_HOME"}, {k: (before.get(k), after.get(k))
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


def mpi_pi(cluster: Cluster, launch: str) -> dict:
    """Run mpi-pi as `launch` says (srun ...): its one JSON line."""
    out = run_ok(cluster.as_user(), f"module load mpi-demo 2>/dev/null; {launch} 2>&1")
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
