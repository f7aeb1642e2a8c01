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

from minihpc import RUN_DIR, policy
from minihpc.cluster import Cluster
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


def _keygen(run_dir: Path, learner: str) -> str:
    """The learner's key pair, made once (again if half of it is missing): the public key."""
    d = key_dir(run_dir, learner)
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
    """Every node's accounts made as class.json lists them (cluster/class_users.py), side by side:
    the controller's and compute nodes' accounts, and the login node's keys and /shared directories."""
    f = client.facts
    services = [s for s in f.slurm_services if s != "slurmdbd"]  # the database needs no users

    def one(s: str):
        return s, client.root("minihpc-class --login" if s == f.login else "minihpc-class", node=s, timeout=180)

    with ThreadPoolExecutor(len(services)) as pool:
        done = list(pool.map(one, services))
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


def add(client: Cluster, n: int, host_mb: int | None, run_dir: Path = RUN_DIR) -> list[Learner]:
    """learner01..learnerNN in the class (those missing made, every one's
    accounts, association, directories and course seen to); the ones made."""
    from minihpc.course.labctl import course_files

    check_count(n, host_mb)
    with _locked(run_dir):
        have, leaving = _doc(run_dir)
        names = {x.name for x in have}
        new = [Learner(name(i), FIRST_UID + i - 1, _keygen(run_dir, name(i)))
               for i in range(1, n + 1) if name(i) not in names]
        learners = [*have, *new]
        hosts = known_hosts(client.facts, run_dir)
        for x in learners:  # beside each key: what their ssh checks the login node by
            replace(key_dir(run_dir, x.name) / "known_hosts", hosts)
        _write(run_dir, learners, [x for x in leaving if x.name not in {y.name for y in new}])
        apply(client)
        _accounting(client, run_dir)
        f = client.facts
        check = " ".join(shlex.quote(course_dir(f.shared, x.name)) for x in learners)
        r = client.root(f"for d in {check}; do [ -e \"$d\" ] || echo \"$d\"; done", node=f.login, timeout=120)
        if r.rc != 0:
            raise _failed(f"looking for the learners' course on {f.shared}", r, f.login)
        missing = set(r.out.split())

        def course(x: Learner) -> None:
            if course_dir(f.shared, x.name) in missing:
                r = as_learner(client, x).put(course_dir(f.shared, x.name), course_files())
                if r.rc != 0:
                    raise _failed(f"copying the course for {x.name}", r, f.login)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(course, learners))
    return new


def remove(client: Cluster, names: list[str], keep_files: bool, run_dir: Path = RUN_DIR) -> None:
    """The learners named out of the class: no more jobs (submission blocked,
    then their jobs cancelled), their association, accounts, homes, scratch,
    leftovers in node temp directories and (unless keep_files) everything
    they own on the shared filesystem gone."""
    with _locked(run_dir):
        have, leaving = _doc(run_dir)
        names = check_names(names, known(run_dir))
        uids = {x.name: x.uid for x in [*have, *leaving]}
        f = client.facts
        users, ids = ",".join(names), " ".join(str(uids[x]) for x in names)
        # By uid: a name the nodes have already forgotten still cancels.
        r = client.root(
            f"sacctmgr -i modify user where name={users} set MaxSubmitJobs=0 >/dev/null 2>&1; "
            f"for u in {ids}; do scancel -u $u || exit 1; done; "
            f"left() {{ squeue -h -o '%U %i' | awk -v ids=' {ids} ' 'index(ids, \" \" $1 \" \") {{print $2}}'; }}; "
            f"for i in $(seq {CANCEL_WAIT_S}); do [ -z \"$(left)\" ] && break; sleep 1; done; "
            f"j=$(left); [ -z \"$j\" ] || {{ echo \"jobs still in the queue after {CANCEL_WAIT_S} s:\" $j; exit 1; }}; "
            f"out=$(sacctmgr -i delete user name={users} 2>&1) || "
            f"case $out in *'Nothing deleted'*) ;; *) echo \"$out\"; exit 1 ;; esac",
            node=f.login, timeout=CANCEL_WAIT_S + 120)
        if r.rc != 0:
            raise _failed("ending the learners' jobs and associations", r, "slurmctld")
        staying = [x for x in have if x.name not in names]
        going = [x for x in leaving if x.name not in names] + [Leaving(x, uids[x], keep_files) for x in names]
        _write(run_dir, staying, going)
        write_if_changed(run_dir / "etc" / "accounting.json", accounting_json(run_dir))
        apply(client)
        _write(run_dir, staying, [x for x in going if x.name not in names])
        for x in names:
            shutil.rmtree(key_dir(run_dir, x), ignore_errors=True)
