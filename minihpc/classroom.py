"""A class on one cluster: an account per learner (`minihpc class add N`
makes learner01..learnerNN, `list` shows them, `remove` takes them away).

The class is written once, to <run>/etc/class.json (every Slurm service
reads it at /etc/minihpc/slurm): each learner's name, uid and public key,
and the learners on their way out. cluster/class_users.py makes the
accounts from it on every node, at every start and when the class changes;
cluster/accounting.py gives each an association under the `class` account
(minihpc.policy), with the lab user's QOS and fair share among them. Each
learner's private key is made here for the instructor to hand out, in
<run>/class/NAME/ (0700, the host user's): no learner can read another's.
Each has a home of their own on every node (0700), /shared/class/NAME
(0700) with the course in it, and ~/course pointing there.

Every step is idempotent and runs for every listed learner on every call,
so a run cut short (a node down, the filesystem faulted) is finished by
running the command again.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minihpc import PROOF_DIR, ROOT, RUN_DIR, policy
from minihpc.cluster import ROOT_USER, Cluster
from minihpc.errors import BadInput, MinihpcError
from minihpc.files import replace, write_if_changed
from minihpc.sitefile import known_hosts

PREFIX = "learner"
MAX_NAMES = 99  # learner01..learner99
# What cluster/class_users.py makes them with (a unit test keeps the two in step).
GROUP, GID, FIRST_UID = "class", 2000, 2001
NAME = re.compile(rf"{PREFIX}[0-9]{{2}}")
ACCOUNT = policy.CLASS_ACCOUNT
# A learner's login shell with Snakemake's main process on the login node: what the host gives each.
LEARNER_MB = 256
FILE = "class.json"
# How long the queue may take to let go of a leaving learner's cancelled jobs.
CANCEL_WAIT_S = 60


@dataclass(frozen=True)
class Learner:
    name: str
    uid: int
    key: str  # the public key sshd admits them by
    # When they joined (the cluster's clock, sacct's form): an earlier learner of that name's jobs are not theirs.
    added: str = ""


@dataclass(frozen=True)
class Leaving:
    name: str
    uid: int
    keep_files: bool


def name(i: int) -> str:
    return f"{PREFIX}{i:02d}"


def home_dir(shared: str, learner: str) -> str:
    """The learner's directory on the shared filesystem (class_users.py makes it)."""
    return f"{shared}/{GROUP}/{learner}"


def course_dir(shared: str, learner: str) -> str:
    return f"{home_dir(shared, learner)}/course"


def _doc(run_dir: Path) -> tuple[list[Learner], list[Leaving]]:
    path = run_dir / "etc" / FILE
    if not path.exists():
        return [], []
    doc = json.loads(path.read_text())
    return [Learner(**x) for x in doc["learners"]], [Leaving(**x) for x in doc.get("leaving", [])]


def read(run_dir: Path = RUN_DIR) -> list[Learner]:
    return _doc(run_dir)[0]


def known(run_dir: Path = RUN_DIR) -> list[str]:
    """Every learner a remove may name: those in the class and those whose removal was cut short."""
    have, leaving = _doc(run_dir)
    return [x.name for x in sorted([*have, *leaving], key=_uid)]


def _write(run_dir: Path, learners: list[Learner], leaving: list[Leaving]) -> None:
    replace(run_dir / "etc" / FILE, json.dumps(
        {"group": GROUP, "gid": GID, "learners": [dataclasses.asdict(x) for x in sorted(learners, key=_uid)],
         "leaving": [dataclasses.asdict(x) for x in sorted(leaving, key=_uid)]}, indent=1) + "\n")


def _uid(x: Learner | Leaving) -> int:
    return x.uid


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """One change to the class at a time: two at once would each write the file without the other's learners."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "class.lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MinihpcError("another minihpc class command is changing the class",
                               "wait for it to finish, then run this again") from None
        yield


def key_dir(run_dir: Path, learner: str) -> Path:
    return run_dir / "class" / learner


def limit(host_mb: int | None) -> int:
    return MAX_NAMES if host_mb is None else max(0, min(MAX_NAMES, host_mb // LEARNER_MB))


def check_count(n: int, host_mb: int | None) -> None:
    most = limit(host_mb)
    if n < 1:
        raise BadInput(f"class add {n}: a class has at least one learner", "give how many, e.g. minihpc class add 30")
    if most < 1:
        raise BadInput(f"class add {n}: this host holds no learner ({LEARNER_MB} MiB each, it has {host_mb} MiB)",
                       "run the class on a machine with more memory")
    if n > most:
        held = (f"this host holds at most {most} ({LEARNER_MB} MiB each of its {host_mb} MiB, and names run to "
                f"{name(MAX_NAMES)})" if host_mb is not None and most < MAX_NAMES else
                f"names run to {name(MAX_NAMES)}: at most {MAX_NAMES}")
        raise BadInput(f"class add {n}: {held}", f"give at most {most}, e.g. minihpc class add {min(30, most)}")


def check_names(words: list[str], known: list[str]) -> list[str]:
    """The learners `words` name, each checked: a name of the class's form, and one of `known`."""
    for w in words:
        if not NAME.fullmatch(w):
            raise BadInput(f"{w[:40]!r} is not a learner's name", f"learners are {name(1)} to {name(MAX_NAMES)}; "
                                                                  "see minihpc class list")
        if w not in known:
            raise BadInput(f"{w} is not in the class", "see minihpc class list")
    return list(dict.fromkeys(words))


def _keygen(run_dir: Path, learner: str, fresh: bool = False) -> str:
    """The learner's key pair, made once (again if half of it is missing, or `fresh`: a learner new
    to the class never gets a key an earlier one of that name had): the public key."""
    d = key_dir(run_dir, learner)
    if fresh:
        shutil.rmtree(d, ignore_errors=True)
    d.parent.mkdir(mode=0o700, exist_ok=True)
    d.mkdir(mode=0o700, exist_ok=True)
    key = d / "id_ed25519"
    if not (key.exists() and key.with_suffix(".pub").exists()):
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{learner}@minihpc", "-f", str(key)],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return " ".join(key.with_suffix(".pub").read_text().split()[:3])


def _failed(what: str, r, node: str) -> MinihpcError:
    return MinihpcError(f"{what} failed: {r.out.strip()[-300:]}",
                        f"see minihpc logs {node}, then run the same minihpc class command again")


def apply(client: Cluster) -> None:
    """Every node's accounts made as class.json lists them (cluster/class_users.py): the controller's
    and compute nodes' side by side, then the login node's, with the keys and /shared: a leaving
    learner's processes are gone everywhere before their files on /shared are removed."""
    f = client.facts
    # slurmdbd too: it learns each user's uid from its own accounts (sacct shows a learner their jobs by it).
    nodes = [s for s in f.slurm_services if s != f.login]

    def one(s: str):
        return s, client.root("minihpc-class --login" if s == f.login else "minihpc-class", node=s, timeout=300)

    with ThreadPoolExecutor(len(nodes)) as pool:
        done = list(pool.map(one, nodes))
    done.append(one(f.login))
    failed = [(s, r) for s, r in done if r.rc != 0]
    if failed:
        s, r = failed[0]
        raise _failed(f"the class's accounts on {s}", r, s)


def accounting_json(run_dir: Path) -> str:
    """<run>/etc/accounting.json (cluster/accounting.py applies it): the
    site's accounting with this class's learners, so a new database gets them too."""
    return json.dumps(policy.accounting([x.name for x in read(run_dir)]), indent=1) + "\n"


def _accounting(client: Cluster, run_dir: Path) -> None:
    write_if_changed(run_dir / "etc" / "accounting.json", accounting_json(run_dir))
    r = client.root("python3 /usr/local/lib/minihpc/accounting.py /etc/minihpc/slurm/accounting.json",
                    node="slurmdbd", timeout=300)
    if r.rc != 0:
        raise _failed("the class's associations", r, "slurmdbd")


def as_learner(client: Cluster, learner: Learner) -> Cluster:
    """The same cluster, as the learner (their commands, files they own)."""
    return Cluster(dataclasses.replace(client.facts, lab_user=learner.name, lab_uid=learner.uid,
                                       lab_account=ACCOUNT), client.transport)


def add(client: Cluster, n: int, host_mb: int | None, run_dir: Path = RUN_DIR,
        proof_dir: Path = PROOF_DIR) -> list[Learner]:
    """learner01..learnerNN in the class (those missing made, every one's
    accounts, association, directories and course seen to); the ones made."""
    from minihpc.course.labctl import Labs

    check_count(n, host_mb)
    with _locked(run_dir):
        have, leaving = _doc(run_dir)
        names = {x.name for x in have}
        unfinished = [x.name for x in leaving if x.name in {name(i) for i in range(1, n + 1)}]
        if unfinished:
            raise BadInput(f"{', '.join(unfinished)}: a removal was cut short, and is not finished",
                           f"finish it first: minihpc class remove {' '.join(unfinished)} --yes")
        joined = client.now() if len(names) < n else ""
        new = [Learner(name(i), FIRST_UID + i - 1, _keygen(run_dir, name(i), fresh=True), joined)
               for i in range(1, n + 1) if name(i) not in names]
        for x in new:  # a learner new to the class starts with no proofs
            shutil.rmtree(proof_dir / "class" / x.name, ignore_errors=True)
        # Each one's key as it is on the host (made again if it went missing: handed out again).
        learners = [*(dataclasses.replace(x, key=_keygen(run_dir, x.name)) for x in have), *new]
        hosts = known_hosts(client.facts, run_dir)
        for x in learners:  # beside each key: what their ssh checks the login node by
            replace(key_dir(run_dir, x.name) / "known_hosts", hosts)
        _write(run_dir, learners, leaving)
        apply(client)
        _accounting(client, run_dir)
        f = client.facts
        check = " ".join(shlex.quote(course_dir(f.shared, x.name)) for x in learners)
        r = client.root(f"for d in {check}; do [ -e \"$d\" ] || echo \"$d\"; done", node=f.login, timeout=120)
        if r.rc != 0:
            raise _failed(f"looking for the learners' course on {f.shared}", r, f.login)
        missing = set(r.out.split())

        def course(x: Learner) -> None:
            if course_dir(f.shared, x.name) in missing:  # laid out as a lab is, its profiles in their account
                try:
                    Labs(as_learner(client, x), workroot=home_dir(f.shared, x.name)).lab("course").reset()
                except RuntimeError as e:
                    raise MinihpcError(f"laying out the course for {x.name} failed: {str(e)[-300:]}",
                                       f"see minihpc logs {f.login}, then run minihpc class add again") from None

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(course, learners))
    return new


def remove(client: Cluster, names: list[str], keep_files: bool, run_dir: Path = RUN_DIR,
           proof_dir: Path = PROOF_DIR) -> None:
    """The learners named out of the class: no more jobs (submission blocked,
    then their jobs cancelled), their association, accounts, homes, scratch,
    leftovers in node temp directories and (unless keep_files) everything
    they own on the shared filesystem gone."""
    with _locked(run_dir):
        have, leaving = _doc(run_dir)
        names = check_names(names, known(run_dir))
        uids = {x.name: x.uid for x in [*have, *leaving]}
        kept = {x.name for x in leaving if x.keep_files}  # asked once, kept when the removal is finished
        for x in names:  # their key first: whatever else is cut short, it logs in nobody again
            shutil.rmtree(key_dir(run_dir, x), ignore_errors=True)
            shutil.rmtree(proof_dir / "class" / x, ignore_errors=True)
        f = client.facts
        users, ids = ",".join(names), " ".join(str(uids[x]) for x in names)
        # Their jobs found by uid (a name the nodes have already forgotten is still a uid in the queue) and
        # cancelled by id, again each second until none is left: a job ending meanwhile is no error.
        r = client.root(
            f"out=$(sacctmgr -i modify user where name={users} set MaxSubmitJobs=0 2>&1) || "
            f"case $out in *'Nothing modified'*|*\"didn't affect anything\"*) ;; *) echo \"$out\"; exit 1 ;; esac; "
            f"left() {{ squeue -h -o '%U %i' | awk -v ids=' {ids} ' 'index(ids, \" \" $1 \" \") {{print $2}}'; }}; "
            f"for i in $(seq {CANCEL_WAIT_S}); do j=$(left); [ -z \"$j\" ] && break; scancel $j 2>/dev/null; sleep 1; "
            "done; "
            f"j=$(left); [ -z \"$j\" ] || {{ echo \"jobs still in the queue after {CANCEL_WAIT_S} s:\" $j; exit 1; }}; "
            f"out=$(sacctmgr -i delete user name={users} 2>&1) || "
            f"case $out in *'Nothing deleted'*|*\"didn't affect anything\"*) ;; *) echo \"$out\"; exit 1 ;; esac",
            node=f.login, timeout=CANCEL_WAIT_S + 120)
        if r.rc != 0:
            raise _failed("ending the learners' jobs and associations", r, "slurmctld")
        staying = [x for x in have if x.name not in names]
        going = [x for x in leaving if x.name not in names] + [Leaving(x, uids[x], keep_files or x in kept)
                                                               for x in names]
        _write(run_dir, staying, going)
        write_if_changed(run_dir / "etc" / "accounting.json", accounting_json(run_dir))
        apply(client)
        _write(run_dir, staying, [x for x in going if x.name not in names])


# The instructor's view (minihpc class status, minihpc class check).

# Job states that ended well; any other end (FAILED, TIMEOUT, OUT_OF_MEMORY, CANCELLED ...) did not.
DONE_WELL = "COMPLETED"
# What reads each learner's newest Snakemake log on the login node, as root (sent on stdin).
LOGS_HELPER = ROOT / "cluster/class_logs.py"
ERROR = re.compile(r"\b\w*(Error|Exception)\b")


def proven_file(proof_dir: Path, learner: str) -> Path:
    """Each core's last result for a learner, kept on the host (learners cannot write it): {core: record}."""
    return proof_dir / "class" / learner / "proven.json"


def proven(proof_dir: Path, learner: str) -> dict[str, dict]:
    path = proven_file(proof_dir, learner)
    return json.loads(path.read_text()) if path.exists() else {}


def check(client: Cluster, learner: Learner, names: list[str], proof_dir: Path) -> list:
    """The course's cores that need no root, run as the learner in labs of
    their own (/shared/class/NAME/labs/), their proofs and evidence in
    proof_dir/class/NAME/ and each core's result kept (proven_file); the checks."""
    from minihpc import course
    from minihpc.course.labctl import Labs

    own = proof_dir / "class" / learner.name
    labs = Labs(as_learner(client, learner), None, own, workroot=f"{home_dir(client.facts.shared, learner.name)}/labs")
    checks = []
    for core in names:
        print(f"running {core} as {learner.name} ...", flush=True)
        p = course.unprivileged(core, labs)
        checks.extend(p.checks)
        record = proven(proof_dir, learner.name)
        record[core] = {"ok": not p.failed, "checks": len(p.checks), "passed": len(p.checks) - len(p.failed),
                        "at": client.now()}
        own.mkdir(parents=True, exist_ok=True)
        replace(proven_file(proof_dir, learner.name), json.dumps(record, indent=1, sort_keys=True) + "\n")
    return checks


def printable(text: str, width: int = 70) -> str:
    """A learner's text for the instructor's terminal: no control characters (a log may carry escapes), one line."""
    clean = "".join(c if c.isprintable() else " " for c in text).strip()
    return clean if len(clean) <= width else clean[:width - 3] + "..."


def status(client: Cluster, proof_dir: Path, run_dir: Path = RUN_DIR) -> list[dict[str, str]]:
    """Per learner: jobs running, pending (with reasons) and finished since
    they joined (how many not well), the cores proven (their proof records,
    on the host), and the first error of their last Snakemake run (the newest
    log under their directory: cluster/class_logs.py)."""
    from collections import Counter, defaultdict

    learners = read(run_dir)
    if not learners:
        return []
    f = client.facts
    names = [x.name for x in learners]
    since = min((x.added for x in learners if x.added), default="2000-01-01T00:00:00")
    try:
        queue = client.root("squeue -h -a -r -o '%u|%T|%r'", node=f.login, timeout=60)
        acct = client.root(f"sacct -a -X -n -P -S {since} -u {','.join(names)} -o User,State,Submit",
                           node=f.login, timeout=60)
        logs = client.sh(f"python3 - {shlex.quote(f'{f.shared}/{GROUP}')} {' '.join(names)}", node=f.login,
                         user=ROOT_USER, stdin=LOGS_HELPER.read_bytes(), timeout=60)
    except subprocess.TimeoutExpired as e:
        raise MinihpcError(f"reading the class's jobs and logs took over {e.timeout:.0f} s", "see minihpc status") \
            from None
    try:
        found = json.loads(logs.out.strip().splitlines()[-1]) if logs.rc == 0 else None
    except (IndexError, ValueError):
        found = None
    for what, r in (("the queue", queue), ("the accounting", acct), ("the learners' logs", logs)):
        if r.rc != 0 or (what == "the learners' logs" and not isinstance(found, dict)):
            raise MinihpcError(f"reading {what} failed: {r.out.strip()[-300:]}", "see minihpc status")
    running, pending, reasons = Counter(), Counter(), defaultdict(Counter)
    for line in queue.out.splitlines():
        user, state, reason = (line.split("|") + ["", ""])[:3]
        if state == "RUNNING":
            running[user] += 1
        elif state == "PENDING":
            pending[user] += 1
            reasons[user][reason] += 1
    finished, failed = Counter(), Counter()
    joined = {x.name: x.added for x in learners}
    for line in acct.out.splitlines():
        user, state, submit = (line.split("|") + ["", ""])[:3]
        if user in joined and submit >= joined[user] and state not in ("RUNNING", "PENDING", "REQUEUED", "SUSPENDED"):
            finished[user] += 1  # (an earlier learner of the name, before this one joined, is not counted)
            failed[user] += not state.startswith(DONE_WELL)
    rows = []
    for x in learners:
        record = proven(proof_dir, x.name)
        why = ", ".join(k or "None" for k, _ in reasons[x.name].most_common(3))
        log = found.get(x.name)
        rows.append({"name": x.name, "running": str(running[x.name]),
                     "pending": f"{pending[x.name]} ({why})" if pending[x.name] else "0",
                     "finished": f"{finished[x.name]} ({failed[x.name]} not ok)" if failed[x.name]
                     else str(finished[x.name]),
                     "proven": " ".join(c for c, v in sorted(record.items()) if v.get("ok")) or "-",
                     "failing": " ".join(c for c, v in sorted(record.items()) if not v.get("ok")) or "-",
                     "error": first_error(str(log.get("tail", ""))) if isinstance(log, dict) else "(no run yet)"})
    return rows


def first_error(log: str) -> str:
    """What a Snakemake log says went wrong first: its "Error in rule X" if any, else the first line
    naming an error (with the line after, if it ends in a colon); "-" if none."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    rule = next((ln for ln in lines if ln.startswith("Error in rule")), None)
    if rule is not None:
        return printable(rule)
    at = next((i for i, ln in enumerate(lines) if ERROR.search(ln)), None)
    if at is None:
        return "-"
    said = lines[at] + (f" {lines[at + 1]}" if lines[at].endswith(":") and at + 1 < len(lines) else "")
    return printable(said)
