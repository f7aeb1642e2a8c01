"""One user never reaches another's work on a node, and a job ends with all it
started: node scratch made by root (no squatting, no link followed), and
processes that hide their job id killed when the user's last job on the node
ends. Each attack runs as an unprivileged user."""

from __future__ import annotations

import pytest
from support import Cluster, eventually, run_ok, sbatch_waited

from minihpc.cluster import Cluster as Client
from scratch import policy


def test_scratch_is_roots_and_each_users_directory_is_private(cluster: Cluster, client: Client) -> None:
    f = client.facts
    node = cluster.compute_names[0]
    alice = cluster.host(node, f.other_user)
    # Nobody can make a directory for another user (or anything else) at the top.
    r = alice.run(f"mkdir {policy.MOUNT}/{f.lab_user}-squat || mkdir {policy.MOUNT}/newcomer")
    assert r.rc != 0 and "Permission denied" in r.stderr, r
    # Each user's own directory is there from the node's start: theirs alone.
    for user in (f.lab_user, f.other_user):
        owner_mode = run_ok(cluster.host(node), f"stat -c '%U %a %F' {policy.MOUNT}/{user}").strip().split(maxsplit=2)
        assert owner_mode == [user, "700", "directory"], owner_mode
    r = alice.run(f"ls {policy.MOUNT}/{f.lab_user} || touch {policy.MOUNT}/{f.lab_user}/planted")
    assert r.rc != 0 and "Permission denied" in r.stderr, r


def test_a_jobs_scratch_is_made_by_root_and_a_planted_link_is_not_followed(cluster: Cluster, client: Client) -> None:
    f = client.facts
    node = cluster.compute_names[0]
    user, root = cluster.host("login", f.lab_user), cluster.host(node)
    out = f"/tmp/isolation-{f.lab_user}.out"
    job = run_ok(user, f"sbatch --parsable --hold -w {node} -o {out} --chdir /tmp "
                       "--wrap 'stat -c \"%U %a %F\" /scratch/$USER/job-$SLURM_JOB_ID'").strip()
    # The user plants a link where the job's directory will be, at another user's home:
    # a Prolog that followed it would hand alice's home to the lab user.
    planted = f"{policy.MOUNT}/{f.lab_user}/job-{job}"
    run_ok(cluster.host(node, f.lab_user), f"ln -s /home/{f.other_user} {planted}")
    run_ok(user, f"scontrol release {job}")
    # Up to minutes: other tests' jobs may hold the node's CPUs meanwhile.
    eventually(lambda: root.run(f"cat {out}").stdout.strip(), timeout=300, what=f"job {job}'s output")
    try:
        assert run_ok(root, f"cat {out}").strip().split(maxsplit=2) == [f.lab_user, "700", "directory"]
        assert run_ok(root, f"stat -c '%U %a' /home/{f.other_user}").split() == [f.other_user, "700"]
    finally:
        run_ok(root, f"rm -rf {out} {planted}")


# Alone: the stray ends only with the lab user's last job on the node, which must be this test's.
@pytest.mark.alone
def test_a_process_that_hides_its_job_id_ends_with_the_users_last_job_on_the_node(cluster: Cluster,
                                                                                   client: Client) -> None:
    f = client.facts
    node = cluster.compute_names[0]
    user, root = cluster.host("login", f.lab_user), cluster.host(node)
    # Each process is known by its own sleep's length (sbatch --wrap runs /bin/sh: no exec -a).
    other_s, hidden_s = "611.5", "917.5"

    def alive(what: str) -> list[str]:
        return root.run(f"pgrep -u {f.lab_user} -f 'sleep {what}'").stdout.split()

    # Another job of the user holds the node: its processes must live, and so
    # does the stray until that job ends too (it may be that job's).
    other = run_ok(user, f"sbatch --parsable -w {node} -n1 -o /dev/null --chdir /tmp "
                         f"--wrap 'sleep {other_s}'").strip()
    try:
        eventually(lambda: alive(other_s), timeout=60, what="the other job running")
        run_ok(user, sbatch_waited(f"-w {node} -n1 -o /dev/null --chdir /tmp --wrap "
                                   f"'env -u SLURM_JOB_ID setsid sleep {hidden_s} & sleep 1'"))
        assert alive(hidden_s), "the stray was started"
        assert alive(other_s), "another running job's processes were killed"
    finally:
        run_ok(user, f"scancel {other}")
    try:
        eventually(lambda: not alive(hidden_s) and not alive(other_s), timeout=60,
                   what="every process of the user gone once no job of theirs runs")
    except AssertionError as e:  # what the epilog saw and did, for whoever reads the failure
        seen = root.run(f"scontrol listpids; ps -u {f.lab_user} -o pid,ppid,etimes,args; squeue -w {node}")
        epilog = [line for line in cluster.logs(node, since="3m").splitlines() if "epilog" in line]
        raise AssertionError(f"{e}\n{seen.stdout}{seen.stderr}\n" + "\n".join(epilog[-20:])) from None
    assert "all of their processes" in cluster.logs(node, since="2m")


@pytest.mark.cost(40)
def test_one_user_with_more_files_than_the_client_keeps_open_leaves_the_others_working(cluster: Cluster,
                                                                                         client: Client) -> None:
    """alice makes more files on /shared than the login node's client keeps
    descriptors for (an eighth of its descriptor limit): the lab user's
    files, looked up before, still open, change and go, though their nodes'
    descriptors were closed meanwhile. They are reopened by name: the
    container has no CAP_DAC_READ_SEARCH, and reopening by handle, which
    needs it, was refused (EPERM, in other users' runs, at ac84958)."""
    f = client.facts
    mine, hers = f"{f.shared}/test-bounds-{f.lab_user}", f"{f.shared}/test-bounds-{f.other_user}"
    stats = "python3 -c \"import json; d = json.load(open('/run/minihpc-nfs/stats.json')); print(d['node_reopens'])\""
    student, alice = cluster.as_user("login"), cluster.host("login", f.other_user)
    try:
        run_ok(student, f"rm -rf {mine} && mkdir -p {mine}/deep/a/b && cd {mine} && "
                        "for i in $(seq 20); do echo $i > f$i; echo $i > deep/a/b/g$i; done && ls -R >/dev/null")
        before = int(run_ok(cluster.host("login"), stats))
        limit = int(run_ok(cluster.host("login"), "cat /proc/$(pgrep -f nfs.client | head -1)/limits | "
                                                 "awk '/open files/ {print $5}'"))
        many = limit // 8 + 500
        run_ok(alice, f"rm -rf {hers} && mkdir -p {hers} && python3 -c \"import os\n"
                      f"for i in range({many}): open('{hers}/x%d' % i, 'w').close()\" && ls {hers} | wc -l")
        r = student.run(f"cd {mine} && for i in $(seq 20); do cat f$i deep/a/b/g$i >/dev/null && "
                        "echo more >> f$i && mv deep/a/b/g$i deep/a/b/h$i && rm f$i deep/a/b/h$i || exit 1; done && "
                        "rmdir deep/a/b && echo ok")
        assert r.rc == 0 and r.stdout.strip() == "ok", r
        after = int(run_ok(cluster.host("login"), stats))
        assert after > before, f"no node was reopened ({before} -> {after}): the bound was never reached"
    finally:
        student.run(f"rm -rf {mine}")
        alice.run(f"rm -rf {hers}")
