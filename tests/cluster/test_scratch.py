"""Each node's scratch on the live cluster: private to the node, of the size
the topology declares (and SLURM knows), emptied only when no job runs."""

from __future__ import annotations

import pytest
from support import Cluster, run_ok

from minihpc.cluster import Cluster as Client
from minihpc.errors import MinihpcError
from scratch import policy


@pytest.mark.smoke
def test_each_node_has_its_own_scratch_of_the_declared_size(cluster: Cluster, client: Client) -> None:
    tmp_disk = run_ok(cluster.host("login"), "sinfo -h -N -o '%N %d'").split()
    declared = dict(zip(tmp_disk[::2], tmp_disk[1::2], strict=True))
    nodes = ["login", *cluster.compute_names]
    for node in nodes:
        host = cluster.host(node)
        assert run_ok(host, "findmnt -n -o FSTYPE /scratch").strip() == "tmpfs"
        size_mb = int(run_ok(host, "df -m --output=size /scratch | tail -n 1"))
        if node != "login":
            assert size_mb == int(declared[node]), f"{node}: {size_mb} MiB, SLURM's TmpDisk {declared[node]}"
        assert host.mode(policy.MOUNT) == int(policy.MODE, 8)
    mark = "/scratch/student/test-private"
    run_ok(cluster.as_user("c1"), f"mkdir -p {mark} && echo c1 > {mark}/f")
    try:
        assert client.scratch("c1", mark).files == [f"{mark}/f"]
        assert all(client.scratch(n, mark).files == [] for n in nodes if n != "c1"), "scratch must be private"
    finally:
        run_ok(cluster.host("c1"), f"rm -rf {mark}")


# Alone: cleaning needs an empty queue, and empties c1's scratch, other jobs' staged files too.
@pytest.mark.alone
def test_cleaning_scratch_is_refused_while_a_job_runs(cluster: Cluster, client: Client) -> None:
    user = cluster.as_user("login")
    run_ok(cluster.host("c1"), "mkdir -p /scratch/student/job-left && echo x > /scratch/student/job-left/f")
    job = run_ok(user, "sbatch --parsable -w c1 -o /dev/null --chdir /tmp --wrap 'sleep 120'").strip()
    try:
        run_ok(user, f"for i in $(seq 60); do [ \"$(squeue -h -j {job} -o %T)\" = RUNNING ] && break; sleep 1; done")
        with pytest.raises(MinihpcError) as e:
            client.clean_scratch(["c1"])
        assert f"job {job} of student, RUNNING" in str(e.value) and "scancel" in str(e.value), e.value
        assert client.scratch("c1", "/scratch/student/job-left").files == ["/scratch/student/job-left/f"], \
            "nothing removed"
    finally:
        run_ok(user, f"scancel {job}; for i in $(seq 30); do [ -z \"$(squeue -h -j {job})\" ] && break; sleep 1; done")
    client.clean_scratch(["c1"])
    assert client.scratch("c1").files == []
