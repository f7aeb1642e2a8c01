"""A class on one cluster (minihpc class): 30 learners, each logging in over
SSH with their own key and submitting as themselves from the course in their
home, each seeing only their own files, none reaching another's files or jobs
(checked as each learner of a sample of pairs, both ways, with the owner
shown able to do the same); a link planted where the learners' directories
go never followed; a second `add` finishing what the first left undone; and
learners removed with a session, a running job and files about, nothing of
theirs left on any node, on /shared or in the accounting."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import browser
import pytest
from support import cli, ssh_argv

from minihpc import PROOF_DIR, RUN_DIR, classroom, rest
from minihpc.cluster import Cluster as Client
from minihpc.page import server

N = 30
# Pairs checked both ways, as each of the two: neighbours, far apart, the last and the first.
PAIRS = [("learner01", "learner02"), ("learner07", "learner23"), ("learner30", "learner01")]
# Where the lab user plants a link before the class exists: root must never follow it.
PLANTED = "planted-by-the-lab-user"


def ssh(client: Client, learner: str, command: str, key_of: str | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """As the learner, over SSH, the way the instructor hands it out: their key and the known_hosts beside it."""
    d = classroom.key_dir(RUN_DIR, key_of or learner)
    return subprocess.run(ssh_argv(client.facts.ssh_port, d / "id_ed25519", d / "known_hosts", learner, command),
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.fixture(scope="module")
def learners(client: Client) -> Iterator[dict[str, classroom.Learner]]:
    f = client.facts
    top = f"{f.shared}/{classroom.GROUP}"
    assert not classroom.read(), "a class left on the cluster by an earlier run: minihpc class remove --all --yes"
    # The lab user gets there first: /shared/class a link to a directory of theirs, with a learner01 in it.
    r = client.root(f"rm -rf {top} {top}.moved-*")
    assert r.rc == 0, r.out
    r = client.sh(f"mkdir -p {f.shared}/{PLANTED}/learner01 && ln -s {f.shared}/{PLANTED} {top}")
    assert r.rc == 0, r.out
    try:
        r = cli("class", "add", str(N))
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"class: {N} learner(s) added, {N} in the class" in r.stdout, r.stdout
        yield {x.name: x for x in classroom.read()}
    finally:
        r = cli("class", "remove", "--all", "--yes")
        client.root(f"rm -rf {top}.moved-* {f.shared}/{PLANTED}")
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.cost(90)
def test_every_learner_logs_in_by_key_and_submits_as_themselves(client: Client, learners) -> None:
    """Over SSH, each with their own key: who they are (a private group, the
    class beside it), their course, a job from it run on a compute node in
    their directory on /shared and accounted to them under the class."""
    script = ("id -un; id -gn; id -Gn; ls ~/course; cd ~/course && "
              "sbatch --parsable --wait -t 1 -o job.out --wrap 'echo $(id -un) $(hostname) $(pwd -P)' >/dev/null && "
              "cat job.out && for i in $(seq 40); do s=$(sacct -n -X -P -o User,Account,State | tail -n 1); "
              "case $s in *COMPLETED) break ;; esac; sleep 0.5; done; echo $s")

    with ThreadPoolExecutor(8) as pool:
        done = dict(zip(sorted(learners), pool.map(lambda n: ssh(client, n, script), sorted(learners)), strict=True))
    bad = {n: r.stdout + r.stderr for n, r in done.items() if r.returncode != 0}
    assert not bad, bad
    f = client.facts
    for name, r in done.items():
        lines = r.stdout.splitlines()
        assert lines[:2] == [name, name], r.stdout
        assert set(lines[2].split()) == {name, classroom.GROUP}, r.stdout
        assert {"Snakefile", "profiles", "workflow"} <= set(lines[3:-2]), f"the course in {name}'s home: {r.stdout}"
        user, host, cwd = lines[-2].split()
        assert (user, cwd) == (name, classroom.course_dir(f.shared, name)) and host in f.nodes, r.stdout
        assert lines[-1] == f"{name}|{classroom.ACCOUNT}|COMPLETED", r.stdout


def test_a_key_logs_in_only_its_own_learner(client: Client, learners) -> None:
    r = ssh(client, "learner01", "id -un", key_of="learner02")
    assert r.returncode == 255 and "Permission denied (publickey)" in r.stderr, r.stdout + r.stderr
    r = ssh(client, "learner02", "id -un")
    assert (r.returncode, r.stdout) == (0, "learner02\n"), r.stdout + r.stderr
    for name in learners:
        d = classroom.key_dir(RUN_DIR, name)
        assert stat.S_IMODE(d.stat().st_mode) == 0o700 and stat.S_IMODE((d / "id_ed25519").stat().st_mode) == 0o600
        assert d.stat().st_uid == os.getuid(), "the instructor's, on the host"
    assert stat.S_IMODE(d.parent.stat().st_mode) == 0o700


def test_homes_and_shared_directories_are_each_learners_own(client: Client, learners) -> None:
    f = client.facts
    for node in (f.login, f.nodes[-1]):
        r = client.root("stat -c '%n %U %G %a' " + " ".join(f"/home/{n}" for n in sorted(learners)), node=node)
        assert r.rc == 0, r.out
        assert sorted(r.out.split("\n")[:-1]) == sorted(f"/home/{n} {n} {n} 700" for n in learners), (node, r.out)
    top = f"{f.shared}/{classroom.GROUP}"
    r = client.root(f"stat -c '%n %U %a %F' {top} " + " ".join(f"{top}/{n}" for n in sorted(learners)))
    assert r.rc == 0, r.out
    assert sorted(r.out.split("\n")[:-1]) == sorted([f"{top} root 755 directory",
                                                     *(f"{top}/{n} {n} 700 directory" for n in learners)]), r.out


def test_a_link_planted_where_the_learners_directories_go_is_never_followed(client: Client, learners) -> None:
    """The lab user made /shared/class a link to a directory of theirs, with
    a learner01 in it, before the class existed: root moved the link aside
    and made its own; the lab user's directory and learner01 there are still
    the lab user's, and nobody but root can make a name in /shared/class."""
    f = client.facts
    r = client.root(f"stat -c '%U %a' {f.shared}/{PLANTED} {f.shared}/{PLANTED}/learner01; "
                    f"readlink {f.shared}/{classroom.GROUP}.moved-*")
    assert r.out.split("\n")[:3] == [f"{f.lab_user} 755", f"{f.lab_user} 755", f"{f.shared}/{PLANTED}"], r.out
    for who in (f.lab_user, "learner03"):
        r = client.sh(f"ln -s /etc {f.shared}/{classroom.GROUP}/learner31 || mkdir {f.shared}/{classroom.GROUP}/x",
                      user=who)
        assert r.rc != 0 and "Permission denied" in r.out, (who, r.out)


@pytest.mark.parametrize(("me", "other"), [*PAIRS, *((b, a) for a, b in PAIRS)])
def test_a_learner_reaches_nothing_of_another(client: Client, learners, me: str, other: str) -> None:
    """As `me`: `other`'s home, /shared directory and a group-readable file in
    /tmp unreadable and unwritable; their queued job not to see (queue,
    accounting, priority, by id), cancel, hold or change. Then `other` does
    the same to their own job: the attempts were refused for who made them,
    not because they cannot work."""
    f = client.facts
    mine = classroom.home_dir(f.shared, other)
    as_other = classroom.as_learner(client, learners[other])
    job = as_other.sh(f"echo mine > ~/private.txt && echo mine > {mine}/private.txt && "
                      f"install -m 0660 /dev/null /tmp/{other}-group.txt && echo mine > /tmp/{other}-group.txt && "
                      "sbatch --parsable --begin=now+1hour -t 5 -o /dev/null --wrap 'sleep 60'")
    assert job.rc == 0, job.out
    job_id = job.out.split()[-1]
    try:
        as_me = classroom.as_learner(client, learners[me])
        assert as_me.sh("id -un").out == f"{me}\n", "the attempts below are made, as the learner"
        attempts = (f"cat /home/{other}/private.txt", f"ls /home/{other}", f"cat {mine}/private.txt", f"ls {mine}",
                    f"touch {mine}/planted", f"cat /tmp/{other}-group.txt", f"echo x >> /tmp/{other}-group.txt",
                    f"scancel {job_id}", f"scontrol hold {job_id}",
                    f"scontrol update JobId={job_id} TimeLimit=1", f"scontrol update JobId={job_id} Comment=mine")
        for attempt in attempts:
            r = as_me.sh(attempt)
            assert r.rc != 0, f"{me} could: {attempt}\n{r.out}"
        as_me.sh(f"scancel -u {other}")  # says nothing of another's jobs: judged by the state below
        # Nor read it: not in the queue, the accounting or by id (PrivateData), though its owner sees it.
        for look in ("squeue -h -a -o '%i %u'", "sacct -n -X -a -o JobID,User", "sprio -h -o '%i %u'",
                     f"scontrol show job {job_id}"):
            seen = as_me.sh(look).out
            assert job_id not in seen.split() and other not in seen, f"{me} sees {other}'s job: {look}\n{seen}"
        assert job_id in as_other.sh(f"scontrol show job {job_id}").out
        state = client.root(f"squeue -h -j {job_id} -o '%u %T %r %l %k'").out.split()
        assert state[:4] == [other, "PENDING", "BeginTime", "5:00"] and "mine" not in state[4:], \
            f"{other}'s job was changed by {me}: {state}"
        assert client.root(f"test ! -e {mine}/planted && cat /tmp/{other}-group.txt").out == "mine\n"
        # The owner can: what was refused to `me` works on one's own job.
        r = as_other.sh(f"scontrol update JobId={job_id} TimeLimit=1 Comment=mine && scontrol hold {job_id} && "
                        f"scontrol release {job_id} && scancel {job_id}")
        assert r.rc == 0, r.out
    finally:
        as_other.sh(f"scancel {job_id}; rm -f ~/private.txt {mine}/private.txt /tmp/{other}-group.txt")


def test_the_rest_api_answers_a_learner_with_their_own_valid_token_and_their_own_jobs(client: Client,
                                                                                       learners) -> None:
    """slurmrestd (JWT): learner01's token reads learner01's jobs and none of
    learner02's, in the queue and in the accounting; used for learner02, or
    expired, or absent, it is refused."""
    f = client.facts
    jobs = {}
    for name in ("learner01", "learner02"):
        r = classroom.as_learner(client, learners[name]).sh(
            "sbatch --parsable --begin=now+1hour -t 5 -o /dev/null --wrap 'sleep 60'")
        assert r.rc == 0, r.out
        jobs[name] = r.out.split()[-1]
    try:
        v = rest.api(f)
        t1 = rest.token(client, "learner01", 300)
        for path in (f"/slurm/{v}/jobs", f"/slurmdb/{v}/jobs"):
            own = rest.get(f, path, "learner01", t1)
            assert own.ok, (path, own)
            seen = {str(j["job_id"]): rest.job_owner(j) for j in own.body["jobs"]}
            if path.startswith("/slurm/"):  # (the accounting may not hold a pending job yet)
                assert seen.get(jobs["learner01"]) == "learner01", (path, seen)
            assert set(seen.values()) <= {"learner01"} and jobs["learner02"] not in seen, (path, seen)
            cross = rest.get(f, path, "learner02", t1)
            assert not cross.ok and not (cross.body or {}).get("jobs"), f"learner01's token read {path} as 02"
            assert rest.get(f, path, None, None).status == 401
        short = rest.token(client, "learner01", 1)
        time.sleep(3)
        old = rest.get(f, f"/slurm/{v}/jobs", "learner01", short)
        assert not old.ok and not (old.body or {}).get("jobs"), "an expired token was taken"
    finally:
        for name, job in jobs.items():
            classroom.as_learner(client, learners[name]).sh(f"scancel {job}")


def test_each_learner_has_an_association_in_the_class_account(client: Client, learners) -> None:
    r = client.root(f"sacctmgr -n -P show assoc account={classroom.ACCOUNT} format=User,QOS,Share")
    rows = {line.split("|")[0]: line.split("|")[1:] for line in r.out.split() if line.split("|")[0]}
    assert sorted(rows) == sorted(learners), r.out
    assert {tuple(v) for v in rows.values()} == {("debug,normal", "1")}, r.out


def test_a_second_add_finishes_what_the_first_left_undone(client: Client, learners) -> None:
    """learner05's course and a node's account of learner06 lost (as a run
    cut short by a node down would leave them): `class add` again makes both,
    adds nobody and leaves everyone else's work alone."""
    f = client.facts
    r = classroom.as_learner(client, learners["learner04"]).sh("echo kept > ~/course/work.txt")
    assert r.rc == 0, r.out
    assert client.root(f"rm -rf {classroom.course_dir(f.shared, 'learner05')}").rc == 0
    assert client.root("pkill -KILL -U 2006; userdel --remove learner06", node=f.nodes[0]).rc == 0
    r = cli("class", "add", str(N))
    assert r.returncode == 0 and f"class: 0 learner(s) added, {N} in the class" in r.stdout, r.stdout + r.stderr
    assert client.root("id -u learner06 && test -d /home/learner06", node=f.nodes[0]).out.split()[0] == "2006"
    r = classroom.as_learner(client, learners["learner05"]).sh("ls ~/course && grep -h slurm_account "
                                                               "~/course/profiles/*/config.yaml")
    assert r.rc == 0 and "Snakefile" in r.out, r.out
    assert r.out.split("\n")[-3:] == [f"  slurm_account: {classroom.ACCOUNT}"] * 2 + [""], "the course in their account"
    r = classroom.as_learner(client, learners["learner04"]).sh("cat ~/course/work.txt")
    assert r.out == "kept\n", r.out


def status_table(out: str) -> dict[str, dict[str, str]]:
    """`minihpc class status`'s table, by learner and column heading (columns found from the heading's positions)."""
    lines = out.splitlines()
    heads = re.findall(r"\S+(?: \S+)*", lines[0])
    starts = [lines[0].index(h) for h in heads]
    ends = [*starts[1:], None]
    return {row[:starts[1]].strip(): {h: row[a:b].strip() for h, a, b in zip(heads, starts, ends, strict=True)}
            for row in lines[1:] if row.strip()}


@pytest.mark.cost(90)
def test_the_instructors_view_matches_the_proofs_and_sacct(client: Client, learners) -> None:
    """learner03 proves Core 1 (minihpc class check, as learner03, in labs of
    their own); learner04 has a job held, one failed and a run that failed;
    learner06 left a log with terminal escapes in it. `class status` shows
    what their proof records and root's squeue and sacct say, and no escape."""
    f = client.facts
    r = cli("class", "check", "learner03", "core3-latency")
    assert (r.returncode, r.stderr) == (2, "minihpc: error: 'core3-latency' is not a core a learner can run; choose "
                                           "from core1, core2, core4, core5 (the others need root or faults)\n")
    r = cli("class", "check", "learner03", "core1", timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    record = classroom.proven(PROOF_DIR, "learner03")
    assert list(record) == ["core1"] and record["core1"]["ok"] and record["core1"]["passed"] > 5, record
    assert (PROOF_DIR / "class/learner03/checks.txt").read_text().startswith("[PASS] core1: ")
    labs = f"{classroom.home_dir(f.shared, 'learner03')}/labs"
    assert client.root(f"stat -c %U {labs} {labs}/core1-slurm").out.split() == ["learner03"] * 2
    # learner07 leaves and a new learner07 joins: the first one's jobs (one each, at the start) are not theirs.
    for args in (("remove", "learner07", "--yes"), ("add", str(N))):
        r = cli("class", *args)
        assert r.returncode == 0, r.stdout + r.stderr
    had = client.root("sacct -a -X -n -P -S 2000-01-01 -u learner07 -o JobID").out.split()
    assert had, "the first learner07's jobs are in the accounting"
    as04 = classroom.as_learner(client, learners["learner04"])
    held = as04.sh("sbatch --parsable --hold -t 5 -o /dev/null --wrap 'sleep 60'")
    assert held.rc == 0, held.out
    as08 = classroom.as_learner(client, learners["learner08"])
    busy = as08.sh("sbatch --parsable -t 3 -o /dev/null --wrap 'sleep 170'")
    assert busy.rc == 0, busy.out
    try:
        deadline = time.monotonic() + 60
        while client.root(f"squeue -h -j {busy.out.split()[-1]} -o %T").out.strip() != "RUNNING":
            assert time.monotonic() < deadline, "learner08's job never ran"
            time.sleep(1)
        failed = as04.sh("sbatch --parsable --wait -t 1 -o /dev/null --wrap false")
        run = as04.sh("cd ~/course && snakemake --profile profiles/local --cores 1 results/flaky_once.txt")
        assert run.rc != 0 and "Error in rule flaky_once" in run.out, run.out
        escape = "\x1b]0;owned\x07\x1b[2J"
        log = f"{classroom.course_dir(f.shared, 'learner06')}/.snakemake/log/9999.snakemake.log"
        w = classroom.as_learner(client, learners["learner06"]).sh(
            f"mkdir -p $(dirname {log}) && printf '%s WorkflowError: boom\\n' {shlex.quote(escape)} > {log}")
        assert w.rc == 0, w.out
        r = cli("class", "status")
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout, repr(r.stdout)
        table = status_table(r.stdout)
        assert sorted(table) == sorted(classroom.known()), r.stdout
        ended, joined = (Counter(), Counter()), {x.name: x.added for x in classroom.read()}
        for line in client.root("sacct -a -X -n -P -S 2000-01-01 -o User,State,Submit").out.splitlines():
            user, state, submit = line.split("|")
            if user in table and submit >= joined[user] and state not in ("PENDING", "RUNNING"):
                ended[0][user] += 1
                ended[1][user] += state != "COMPLETED"
        for name, row in table.items():
            want = f"{ended[0][name]} ({ended[1][name]} not ok)" if ended[1][name] else str(ended[0][name])
            assert row["FINISHED"] == want, (name, row)
        assert table["learner03"]["PROVEN"] == "core1" and table["learner05"]["PROVEN"] == "-", r.stdout
        assert table["learner04"]["PENDING (WHY)"] == "1 (JobHeldUser)", r.stdout
        assert table["learner08"]["RUNNING"] == "1" and table["learner03"]["RUNNING"] == "0", r.stdout
        assert table["learner07"]["FINISHED"] == "0", f"the earlier learner07's {had} counted: {r.stdout}"
        assert ended[1]["learner04"] >= 1 and failed.rc != 0
        assert table["learner04"]["LAST RUN'S FIRST ERROR"] == "Error in rule flaky_once:", r.stdout
        assert table["learner06"]["LAST RUN'S FIRST ERROR"] == "]0;owned  [2J WorkflowError: boom", r.stdout
        assert table["learner05"]["LAST RUN'S FIRST ERROR"] == "(no run yet)", r.stdout
    finally:
        as04.sh(f"scancel {held.out.strip()}")
        as08.sh(f"scancel {busy.out.strip()}")


@pytest.mark.cost(40)
def test_a_learners_page_shows_their_jobs_and_others_only_as_counts(client: Client, learners) -> None:
    """The live page (minihpc class page) as learner07, by the URL written for the instructor to hand
    out: their jobs in detail, read with their own token; learner23's (and everyone's) only as counts,
    nowhere by name, in the data or the timeline; the instructor's page shows both. In a real browser,
    with no console errors; a screenshot to .proof/class/page/learner07.png."""
    jobs = {}
    for name in ("learner07", "learner23"):
        r = classroom.as_learner(client, learners[name]).sh(
            f"sbatch --parsable --begin=now+1hour -t 5 -J {name}-page -o /dev/null --wrap true")
        assert r.rc == 0, r.out
        jobs[name] = r.out.split()[-1]
    page = browser.PageServer()
    try:
        d = classroom.key_dir(RUN_DIR, "learner07")
        key, url = (d / server.KEY_FILE).read_text().strip(), (d / server.URL_FILE).read_text().strip()
        assert url == f"{page.base}/?key={key}"
        mine = page.state(key)
        assert mine["viewer"] == "learner07" and "queue" not in mine, mine
        assert [j["id"] for j in mine["jobs"]] == [jobs["learner07"]], mine["jobs"]
        assert mine["jobs"][0]["user"] == "learner07" and mine["jobs"][0]["reason"] == "BeginTime", mine["jobs"]
        assert mine["others"]["pending"] >= 1, mine["others"]
        assert "learner23" not in json.dumps(mine), "another learner's name in learner07's page"
        status, svg = page.get("/timeline.svg", key)
        assert status == 200 and b"learner23" not in svg
        instructor = page.state(page.url.split("key=", 1)[1])
        assert {jobs["learner07"], jobs["learner23"]} <= {j["id"] for j in instructor["jobs"]}
        assert {"learner07", "learner23"} <= {q["user"] for q in instructor["queue"]}
        b = browser.Browser(browser.image())
        try:
            b.open(url)
            b.wait_for(f"[...document.querySelectorAll('#jobs tbody tr')].some(r => r.children[0].textContent "
                       f"=== '{jobs['learner07']}')", what="learner07's job on their page")
            assert b.eval("document.getElementById('queue').hidden") is True
            assert b.eval("document.getElementById('others').textContent").startswith("Other users' jobs: ")
            b.screenshot(PROOF_DIR / "class" / "page" / "learner07.png")
            assert b.errors == [], b.errors
        finally:
            b.close()
    finally:
        out = page.close()
        for name, job in jobs.items():
            classroom.as_learner(client, learners[name]).sh(f"scancel {job}")
    assert "Traceback" not in out, out


@pytest.mark.cost(60)
def test_removed_learners_leave_nothing_behind(client: Client, learners) -> None:
    """learner29, logged in over SSH with a job running and files on /shared
    (their directory and the shared top level), in /tmp and /dev/shm on the
    login node and a compute node, removed: the session and the job end,
    and nothing of theirs is left anywhere. learner28 is removed keeping
    their files. A removal cut short (learner27 listed as leaving) is
    finished by naming them again."""
    f = client.facts
    name, uid = "learner29", learners["learner29"].uid
    me = classroom.as_learner(client, learners[name])
    session = subprocess.Popen(ssh_argv(f.ssh_port, classroom.key_dir(RUN_DIR, name) / "id_ed25519",
                                        classroom.key_dir(RUN_DIR, name) / "known_hosts", name, "sleep 600"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        # Trees deeper than a recursive remover goes (Python's stack: about 1000), in /tmp and on /shared.
        deep = "$(printf 'a/%.0s' $(seq 1200))"
        r = me.sh(f"cd ~/course && echo mine > notes.txt && echo mine > {f.shared}/{name}-top.txt && "
                  f"echo x > /tmp/mine && echo x > /dev/shm/mine && mkdir -p /tmp/deep/{deep} ./deep/{deep} && "
                  "sbatch --parsable -t 5 -o /dev/null --wrap 'echo x > /tmp/mine-too; sleep 600'")
        assert r.rc == 0, r.out
        job = r.out.split()[-1]
        deadline = time.monotonic() + 60
        while client.root(f"squeue -h -j {job} -o %T").out.strip() != "RUNNING":
            assert time.monotonic() < deadline, client.root(f"squeue -h -j {job} -o '%T %r'").out
            time.sleep(1)
        assert client.root(f"pgrep -U {uid} sshd").rc == 0, "the session is up"
        r = cli("class", "remove", name, "--yes")
        assert r.returncode == 0 and f"class: removed 1 learner(s); {N - 1} left" in r.stdout, r.stdout + r.stderr
        session.wait(timeout=30)
    finally:
        session.kill()
    assert client.root(f"sacct -n -X -j {job} -o State").out.split()[0].startswith("CANCELLED"), "the job ended"
    for node in [f.login, *f.nodes, "slurmctld"]:
        gone = client.root(f"! getent passwd {name} && ! getent group {name} && test ! -e /home/{name} && "
                           f"test ! -e /etc/ssh/authorized_keys/{name} && ! pgrep -U {uid} && "
                           f"test -z \"$(find /tmp /var/tmp /dev/shm -xdev -uid {uid})\" && "
                           f"{{ ! test -d /scratch || test ! -e /scratch/{name}; }}", node=node)
        assert gone.rc == 0, f"{name} left on {node}: {gone.out}"
    assert client.root(f"find {f.shared} -xdev -uid {uid}").out == "", "nothing of theirs on /shared"
    assert client.root(f"sacctmgr -n -P show assoc user={name}").out.strip() == ""
    assert client.root(f"sacctmgr -n -P show user {name}").out.strip() == ""
    assert not classroom.key_dir(RUN_DIR, name).exists()
    assert name not in classroom.known()
    assert name not in {u["name"] for u in json.loads((RUN_DIR / "etc/accounting.json").read_text())["users"]}
    r = cli("class", "remove", name, "--yes")
    assert r.returncode == 2 and r.stderr == f"minihpc: error: {name} is not in the class; see minihpc class list\n"

    # Keeping their files: the account goes, the files stay (the instructor's to hand back).
    kept = classroom.as_learner(client, learners["learner28"])
    assert kept.sh("echo mine > ~/course/notes.txt").rc == 0
    r = cli("class", "remove", "learner28", "--keep-files", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert client.root(f"stat -c %u {classroom.course_dir(f.shared, 'learner28')}/notes.txt").out == "2028\n"
    assert client.root("! getent passwd learner28").rc == 0
    client.root(f"rm -rf {classroom.home_dir(f.shared, 'learner28')}")

    # A removal cut short: learner27 is leaving in class.json, but still has an account.
    have, leaving = classroom._doc(RUN_DIR)
    classroom._write(RUN_DIR, [x for x in have if x.name != "learner27"],
                     [*leaving, classroom.Leaving("learner27", learners["learner27"].uid, False)])
    assert "learner27" in classroom.known()
    r = cli("class", "remove", "learner27", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "learner27" not in classroom.known()
    assert client.root("! getent passwd learner27 && test ! -e "
                       f"{classroom.home_dir(f.shared, 'learner27')}").rc == 0
