"""EIO injected on /shared, path by path: a job reading the file sees an I/O
error; a workflow's job writing its output there fails alone, nothing
downstream runs and nothing poisoned stays on /shared.

Side by side with other tests: a fault rule names one path of this file's
own directories, and the NFS profile stays `off`, which every test beside it
expects. Both tests set the one list of fault rules, so they share this file
(one group: one after the other, never at once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import Cluster, run_ok

from minihpc import ROOT
from minihpc.cluster import Cluster as Client
from minihpc.faults import Faults

WORKFLOW = ROOT / "tests/workflows/faults"


@pytest.fixture
def proof_dir(cluster: Cluster, client: Client) -> Iterator[str]:
    where = f"{cluster.facts.shared}/nfs-eio-proof"
    user = cluster.as_user()
    run_ok(user, f"rm -rf {where} && mkdir -p {where}")
    yield where
    client.set_nfs_profile("off")  # the fault rules dropped, whatever the test did
    user.run(f"rm -rf {where}")


@pytest.mark.cost(50)
def test_an_injected_eio_reaches_the_job_as_an_io_error(cluster: Cluster, proof_dir: str, client: Client) -> None:
    user = cluster.as_user()
    run_ok(user, f"echo payload > {proof_dir}/input.txt")
    rel = proof_dir[len(cluster.facts.shared):]
    client.set_nfs_profile("off", "--fault", f"EIO:op=read,path={rel}/input.txt,node=c1,probability=1")
    r = user.run(f"sbatch --wait -w c1 -o {proof_dir}/job.out --wrap 'cat {proof_dir}/input.txt'")
    out = run_ok(user, f"cat {proof_dir}/job.out")
    assert r.rc != 0 and "Input/output error" in out, out
    jobid = r.stdout.split()[-1]
    state = run_ok(user, f"sacct -n -X -P -j {jobid} -o State,ExitCode").strip()
    assert state.startswith("FAILED"), state
    assert run_ok(cluster.as_user("c2"), f"cat {proof_dir}/input.txt").strip() == "payload", "node c2 unaffected"


@pytest.mark.cost(75)
def test_eio_on_one_output_fails_that_job_and_poisons_nothing(cluster: Cluster, minihpc) -> None:
    faults, name = Faults(cluster.client), "test-faults-eio"
    where = f"{cluster.facts.shared}/{name}"
    args = ["--keep-going", "--config", "parts=4", "seconds=1"]
    faults.apply("nfs-eio", f"{where}/results/parts/2.txt")
    try:
        report = minihpc.run(WORKFLOW, name=name, snakemake_args=args)
    finally:
        faults.apply("nfs-clear")
    assert report.exit_code == 1
    states = {(j.rule, j.wildcards): j.state for j in report.jobs}
    assert states == {("part", "0"): "COMPLETED", ("part", "1"): "COMPLETED", ("part", "2"): "FAILED",
                      ("part", "3"): "COMPLETED"}, "the failed part fails alone and total never runs"
    files = run_ok(cluster.as_user("login"), f"cd {where} && find results -type f | sort").split()
    assert files == ["results/parts/0.txt", "results/parts/1.txt", "results/parts/3.txt"]
    again = minihpc.run(WORKFLOW, name=name, fresh=False, snakemake_args=args)
    assert again.exit_code == 0
    assert [(j.rule, j.wildcards) for j in again.jobs] == [("part", "2")], "the failed part again, alone"
    assert run_ok(cluster.as_user("login"), f"cat {where}/results/total.txt").strip() == "4 parts, sum 6"
