"""The site's shape, seen as its users: partitions with their own nodes and
limits (a request beyond them refused at sbatch, the right partition taking
it), stand-in GPUs, the account tree, a QOS's per-user limits, multifactor
priority putting another user's job first, and the SLURM plugin choosing
partitions and GPUs for rules. Then what a user cannot do about any of it.

Every job here is the test's own and is cancelled when its test ends."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import ended, eventually

from minihpc import policy
from minihpc.cluster import Cluster as Client
from minihpc.cluster import parse_sacct
from minihpc.configs import GPU_DEVICE
from minihpc.course.demos import BIG_MB
from minihpc.topology import Topology

ROOT = Path(__file__).resolve().parents[2]
DIR = "/shared/test-site"
# How long a job here may wait for a CPU: other test files run beside this one,
# and their jobs may hold every CPU meanwhile.
START_S = 300


def sbatch(client: Client, args: str, cmd: str = "true", user: str | None = None) -> tuple[int, str]:
    """(rc, output) of `sbatch --parsable`; the output is the job id on success."""
    r = client.sh(f"sbatch --parsable -o /dev/null {args} --wrap '{cmd}'", user=user, workdir="/tmp")
    return r.rc, r.out.strip()


def queue(client: Client) -> dict[str, tuple[str, str, str]]:
    """Every job in the queue: id -> (user, state, reason)."""
    r = client.root("squeue -h -o '%i|%u|%T|%r'")  # root's view: a user sees only their own jobs
    return {row["id"]: (row["user"], row["state"], row["reason"])
            for row in parse_sacct(r.out, ("id", "user", "state", "reason"))}


@pytest.fixture
def submit(client: Client) -> Iterator[Callable[..., tuple[int, str]]]:
    """sbatch() that keeps the test's jobs, to cancel them when it ends and wait
    until they have left the queue: its own only, as other tests' jobs (the
    same users') run meanwhile."""
    jobs: list[tuple[str | None, str]] = []

    def run(args: str, cmd: str = "true", user: str | None = None) -> tuple[int, str]:
        rc, out = sbatch(client, args, cmd, user)
        if rc == 0:
            jobs.append((user, out))
        return rc, out
    yield run
    for user, job in jobs:
        client.sh(f"scancel {job}", user=user)
    eventually(lambda: not {job for _, job in jobs} & set(queue(client)), timeout=60,
               what="the test's jobs to leave the queue")


@pytest.mark.smoke
def test_partitions_are_the_sites(client: Client) -> None:
    f = client.facts
    want = {p.name: p for p in policy.partitions(Topology.from_facts(f))}
    have = {p["PartitionName"]: p for p in client.partitions()}
    assert list(have) == list(want) == f.partitions
    for name, p in want.items():
        got = have[name]
        hosts = client.sh(f"scontrol show hostnames {got['Nodes']}").out.split()
        assert hosts == p.nodes, name
        assert (got["Default"], got["DefaultTime"], got["MaxTime"]) == \
            ("YES" if p.default else "NO", p.default_time, p.max_time), name
        assert got["MaxMemPerNode"] == (str(p.max_mem_per_node) if p.max_mem_per_node else "UNLIMITED"), name
    # The bigmem partition holds the node(s) with more memory than the rest.
    assert all(f.node_mem_mb[n] > f.mem_mb for n in want["bigmem"].nodes)


@pytest.mark.smoke
def test_memory_beyond_the_default_partition_is_refused_and_bigmem_takes_it(client: Client) -> None:
    rc, out = sbatch(client, f"--mem={BIG_MB}")
    assert rc != 0 and "Memory required by task is not available" in out, out
    rc, out = sbatch(client, f"-p bigmem --mem={BIG_MB}", "hostname")
    assert rc == 0, out
    row = ended(client, out, ("Partition", "NodeList", "ReqMem"))[out]
    assert (row["State"], row["Partition"], row["ReqMem"]) == ("COMPLETED", "bigmem", f"{BIG_MB}M"), row
    assert client.facts.node_mem_mb[row["NodeList"]] >= BIG_MB, row


@pytest.mark.smoke
def test_time_beyond_the_default_partition_is_refused_and_long_takes_it(client: Client) -> None:
    rc, out = sbatch(client, "-t 5:00:00")
    assert rc != 0 and "Requested time limit is invalid (missing or exceeds some limit)" in out, out
    rc, out = sbatch(client, "-p long -t 5:00:00")
    assert rc == 0, out
    row = ended(client, out, ("Partition", "Timelimit"))[out]
    assert (row["State"], row["Partition"], row["Timelimit"]) == ("COMPLETED", "long", "05:00:00"), row


@pytest.mark.smoke
def test_gpus_are_scheduled_and_accounted(client: Client) -> None:
    f = client.facts
    [(node, count)] = f.gpus.items()
    r = client.sh("srun --quiet -p gpu --gpus=1 bash -c 'echo $SLURMD_NODENAME $CUDA_VISIBLE_DEVICES'", workdir="/tmp")
    assert r.rc == 0 and r.out.split() == [node, "0"], r.out
    rc, out = sbatch(client, f"-p gpu --gpus={count}", "echo $CUDA_VISIBLE_DEVICES")
    assert rc == 0, out
    row = ended(client, out, ("AllocTRES",))[out]
    assert f"gres/gpu={count}" in row["AllocTRES"], row
    rc, out = sbatch(client, f"-p gpu --gpus={count + 1}")
    assert rc != 0 and "Requested node configuration is not available" in out, out


def test_the_account_tree_holds_both_users(client: Client) -> None:
    f = client.facts
    fields = ("Account", "User", "ParentName", "QOS", "DefaultQOS")
    rows = parse_sacct(client.sh(f"sacctmgr -n -P show assoc format={','.join(fields)}").out, fields)
    parent = {r["Account"]: r["ParentName"] for r in rows if not r["User"]}
    assert parent[f.lab_account] == "teaching" and parent["teaching"] == "root", parent
    assert parent[f.other_account] == "research" and parent["research"] == "root", parent
    users = {r["User"]: r for r in rows if r["User"] and r["User"] != "root"}
    assert {u: r["Account"] for u, r in users.items()} == {f.lab_user: f.lab_account, f.other_user: f.other_account}
    allowed = {u: sorted(qos) for u, _, qos in policy.USERS}
    for u, r in users.items():
        assert (sorted(r["QOS"].split(",")), r["DefaultQOS"]) == (allowed[u], policy.DEFAULT_QOS)


@pytest.mark.smoke
def test_debug_qos_limits_each_user(client: Client, submit: Callable[..., tuple[int, str]]) -> None:
    first = submit("--qos=debug -t 5", "sleep 60")
    second = submit("--qos=debug -t 5", "sleep 60")
    assert first[0] == 0 and second[0] == 0, (first, second)
    # One running per user; the other waits for it.
    eventually(lambda: queue(client).get(second[1], ("", "", ""))[2] == "QOSMaxJobsPerUserLimit", timeout=START_S,
               what=lambda: f"job {second[1]} to pend with QOSMaxJobsPerUserLimit: {queue(client)}")
    assert queue(client)[first[1]][1] == "RUNNING"
    # A third is refused at sbatch.
    rc, out = submit("--qos=debug -t 5")
    assert rc != 0 and "QOSMaxSubmitJobPerUserLimit" in out, out
    # The limits are per user: another user's debug job runs meanwhile.
    rc, theirs = submit("--qos=debug -t 5", "sleep 60", user=client.facts.other_user)
    assert rc == 0, theirs
    eventually(lambda: queue(client).get(theirs, ("", "", ""))[1] == "RUNNING", timeout=START_S,
               what=lambda: f"{client.facts.other_user}'s debug job to run: {queue(client)}")
    # With the lab user's two debug jobs gone, the next is judged on its time alone.
    client.sh(f"scancel {first[1]} {second[1]}")
    eventually(lambda: not {first[1], second[1]} & set(queue(client)), timeout=30)
    rc, out = submit("--qos=debug -t 90")
    assert rc != 0 and "QOSMaxWallDurationPerJobLimit" in out, out


@pytest.mark.alone  # holds every node (--exclusive) and orders the queue: no other test's job may be in it
def test_another_users_higher_priority_job_goes_first(client: Client, submit: Callable[..., tuple[int, str]]) -> None:
    f = client.facts
    whole = f"-N{len(f.nodes)} --exclusive -t 5"
    rc, blocker = submit(whole, "sleep 300", user=f.other_user)
    assert rc == 0, blocker
    eventually(lambda: queue(client).get(blocker, ("", "", ""))[1] == "RUNNING", timeout=60,
               what=lambda: f"the blocker to run: {queue(client)}")
    rc, mine = submit(whole, "sleep 2")
    assert rc == 0, mine
    # Submitted after mine, but in the debug QOS: QOS outweighs everything else.
    rc, theirs = submit(f"{whole} --qos=debug", "sleep 2", user=f.other_user)
    assert rc == 0, theirs
    eventually(lambda: (queue(client)[mine][2], queue(client)[theirs][2]) == ("Priority", "Resources"),
               timeout=60, what=lambda: f"mine to pend for Priority behind theirs: {queue(client)}")
    fields = ("id", "user", "priority", "age", "fairshare", "qos")
    prio = {r["id"]: r for r in parse_sacct(client.root("sprio -h -o '%i|%u|%Y|%A|%F|%Q'").out, fields)}
    assert int(prio[theirs]["qos"]) == policy.PRIORITY["PriorityWeightQOS"], prio
    assert int(prio[mine]["qos"]) == 0, prio
    assert int(prio[theirs]["priority"]) > int(prio[mine]["priority"]), prio
    client.sh(f"scancel {blocker}", user=f.other_user)
    done = {j: ended(client, j, ("Start", "End"))[j] for j in (mine, theirs)}
    assert done[theirs]["State"] == done[mine]["State"] == "COMPLETED", done
    assert done[theirs]["End"] <= done[mine]["Start"], f"theirs ran first: {done}"


def test_a_user_cannot_change_the_sites_rules(client: Client) -> None:
    """As the lab user: another account, an unknown QOS, a negative nice, the
    QOS, the partitions, another user's job and the GPU stand-ins are out of reach."""
    f = client.facts
    refusals = {
        f"--account={f.other_account}": "Invalid account or account/partition combination specified",
        "--qos=nosuch": "Invalid qos specification",
        # Another group's bought priority.
        "--qos=high": "Invalid qos specification",
        "--nice=-1000": "Invalid --nice value",
    }
    for args, says in refusals.items():
        rc, out = sbatch(client, args)
        assert rc != 0 and says in out, (args, out)
    for cmd in ("sacctmgr -i modify qos where name=debug set MaxJobsPerUser=100",
                f"sacctmgr -i modify user {f.lab_user} set QOS+=high",
                f"sacctmgr -i add user {f.lab_user} account={f.other_account}",
                "scontrol update partitionname=short MaxTime=INFINITE MaxMemPerNode=UNLIMITED"):
        r = client.sh(cmd)
        assert r.rc != 0, (cmd, r.out)
    assert [q for q in client.qos() if q["Name"] == "debug"][0]["MaxJobsPU"] == "1"
    [part] = [p for p in client.partitions() if p["PartitionName"] == "short"]
    assert part["MaxTime"] == "04:00:00", part
    rc, theirs = sbatch(client, "--hold", user=f.other_user)
    assert rc == 0, theirs
    try:
        for cmd in (f"scontrol update jobid={theirs} priority=999999", f"scontrol release {theirs}",
                    f"scancel {theirs}"):
            r = client.sh(cmd)
            assert r.rc != 0, (cmd, r.out)
        assert queue(client)[theirs][:2] == (f.other_user, "PENDING")
    finally:
        client.sh(f"scancel {theirs}", user=f.other_user)
    node = next(iter(f.gpus))
    dev = GPU_DEVICE.format(0)
    # One stream only: docker exec passes a command's stdout and stderr apart, in no set order.
    r = client.sh(f"ln -sfn /etc/shadow {dev} 2>/dev/null && echo replaced; echo x > {dev}; readlink {dev}",
                  node=node)
    assert r.out.split() == ["/dev/null"], r.out


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory: pytest.TempPathFactory, client: Client) -> Iterator[tuple[Path, dict]]:
    wf = tmp_path_factory.mktemp("site") / "site"
    shutil.copytree(ROOT / "tests/workflows/site", wf)
    r = subprocess.run([sys.executable, "-m", "minihpc", "run", str(wf), "--name", "test-site", "--fresh",
                        "--fetch", "results/*.txt"], cwd=ROOT, capture_output=True, text=True, check=False,
                       stdin=subprocess.DEVNULL, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    yield wf, json.loads((wf / ".minihpc/report.json").read_text())
    client.sh("rm -rf /shared/test-site")


@pytest.mark.cost(30)
def test_the_plugin_sends_each_rule_to_its_partition_with_its_gpus(plugin_run, client: Client) -> None:
    wf, report = plugin_run
    fields = ("JobID", "Comment", "Partition", "NodeList", "State", "ReqMem", "AllocTRES", "Account")
    rows = {r["Comment"].removeprefix("rule_"): r for r in parse_sacct(client.sh(
        f"sacct -n -P -X --name {report['run_id']} -o {','.join(fields)} -S now-1hours").out, fields)}
    f = client.facts
    [(gpu_node, count)] = f.gpus.items()
    assert (rows["gpu"]["Partition"], rows["gpu"]["NodeList"]) == ("gpu", gpu_node), rows["gpu"]
    assert "gres/gpu=1" in rows["gpu"]["AllocTRES"], rows["gpu"]
    assert "gres/gpu=2" in rows["gres"]["AllocTRES"], rows["gres"]
    assert (wf / "results/gpu.txt").read_text().split() == ["partition=gpu", f"node={gpu_node}", "gpus=0"]
    assert (wf / "results/gres.txt").read_text().split()[-1] == "gpus=0,1"
    assert (rows["bigmem"]["Partition"], rows["bigmem"]["ReqMem"]) == ("bigmem", f"{BIG_MB}M"), rows["bigmem"]
    assert f.node_mem_mb[rows["bigmem"]["NodeList"]] >= BIG_MB
    # minihpc run's report says where each job ran, and under what limit.
    assert {j["rule"]: (j["partition"], j["node"]) for j in report["jobs"]} == \
        {rule: (r["Partition"], r["NodeList"]) for rule, r in rows.items()}, report["jobs"]
    assert {j["time_limit"] for j in report["jobs"]} == {"00:30:00"}, "profiles/slurm's runtime: 30"
    # The profile's default-resources: every job charged to the lab account.
    assert {r["Account"] for r in rows.values()} == {f.lab_account}, rows


def test_status_shows_partitions_and_limits() -> None:
    r = subprocess.run([sys.executable, "-m", "minihpc", "status"], cwd=ROOT, capture_output=True, text=True,
                       check=False, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("PARTITION "))
    assert lines[header].split() == ["PARTITION", "DEFAULT", "NODES", "DEFAULTTIME", "MAXTIME", "MAXMEM/NODE", "TRES"]
    short = lines[header + 1].split()
    assert (short[0], short[1], short[3], short[4]) == ("short", "YES", "01:00:00", "04:00:00"), short
    qos = next(i for i, line in enumerate(lines) if line.startswith("QOS "))
    assert lines[qos + 2].split()[:5] == ["debug", "100", "01:00:00", "1", "2"], lines[qos:qos + 3]
