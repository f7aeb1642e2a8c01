"""The class's learners as the host writes them (minihpc.classroom) and as
every node reads them (cluster/class_users.py): the two in step, the counts
and names refused before anything starts, each learner's key the host
user's alone, and a class.json that is not one refused whole on the node."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import stat
from pathlib import Path

import pytest

from minihpc import classroom, policy
from minihpc.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("class_users", ROOT / "cluster/class_users.py")
class_users = importlib.util.module_from_spec(spec)
spec.loader.exec_module(class_users)


def test_the_host_and_the_nodes_agree_on_the_class() -> None:
    assert (class_users.GROUP, class_users.GID) == (classroom.GROUP, classroom.GID)
    assert classroom.FIRST_UID + classroom.MAX_NAMES - 1 in class_users.UIDS
    assert class_users.UIDS[0] == classroom.FIRST_UID
    assert class_users.NAME.pattern == classroom.NAME.pattern
    assert str(class_users.CONF).endswith("/" + classroom.FILE)


@pytest.mark.parametrize(("n", "host_mb", "message"), [
    (0, 24000, "class add 0: a class has at least one learner; give how many, e.g. minihpc class add 30"),
    (-3, 24000, "class add -3: a class has at least one learner"),
    (100, None, "class add 100: names run to learner99: at most 99; give at most 99, e.g. minihpc class add 30"),
    (1000, 24105, "class add 1000: this host holds at most 94 (256 MiB each of its 24105 MiB, and names run to "
                  "learner99); give at most 94, e.g. minihpc class add 30"),
    (20, 4096, "class add 20: this host holds at most 16 (256 MiB each of its 4096 MiB"),
    (1, 200, "class add 1: this host holds no learner (256 MiB each, it has 200 MiB); run the class on a machine"),
])
def test_a_count_the_class_cannot_have_is_refused(n: int, host_mb: int | None, message: str) -> None:
    with pytest.raises(BadInput) as e:
        classroom.check_count(n, host_mb)
    assert str(e.value).startswith(message)


def test_the_counts_it_can_have_pass() -> None:
    classroom.check_count(1, 24000)
    classroom.check_count(30, 24000)
    classroom.check_count(99, None)


@pytest.mark.parametrize(("words", "message"), [
    (["x;id"], "'x;id' is not a learner's name; learners are learner01 to learner99"),
    (["learner1"], "'learner1' is not a learner's name"),
    (["../learner01"], "'../learner01' is not a learner's name"),
    (["learner01 "], "'learner01 ' is not a learner's name"),
    (["learner05"], "learner05 is not in the class; see minihpc class list"),
])
def test_a_name_not_of_the_class_is_refused(words: list[str], message: str) -> None:
    known = ["learner01"]
    with pytest.raises(BadInput) as e:
        classroom.check_names(words, known)
    assert str(e.value).startswith(message)
    assert classroom.check_names(["learner01", "learner01"], known) == ["learner01"]


def test_each_key_is_the_host_users_alone_and_what_the_nodes_admit(tmp_path: Path) -> None:
    pub = classroom._keygen(tmp_path, "learner07")
    d = classroom.key_dir(tmp_path, "learner07")
    assert stat.S_IMODE(d.parent.stat().st_mode) == 0o700 and stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "id_ed25519").stat().st_mode) == 0o600
    assert class_users.KEY.fullmatch(pub) and pub.endswith(" learner07@minihpc"), pub
    assert classroom._keygen(tmp_path, "learner07") == pub, "made once"


def test_the_class_is_written_for_the_nodes_and_the_accounting(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    learners = [classroom.Learner(classroom.name(i), classroom.FIRST_UID + i - 1,
                                  classroom._keygen(tmp_path, classroom.name(i))) for i in (1, 2)]
    leaving = [classroom.Leaving("learner05", 2005, True), classroom.Leaving("learner04", 2004, False)]
    classroom._write(tmp_path, learners, leaving)
    assert classroom.read(tmp_path) == learners
    assert classroom._doc(tmp_path) == (learners, leaving[::-1]), "in uid order"
    monkeypatch.setattr(class_users, "CONF", tmp_path / "etc" / classroom.FILE)
    assert class_users.read() == ({x.name: (x.uid, x.key) for x in learners},
                                  {"learner04": (2004, False), "learner05": (2005, True)})
    acct = policy.accounting([x.name for x in learners])
    assert {"name": "class", "parent": "teaching", "description": "a class's learners"} in acct["accounts"]
    assert [u for u in acct["users"] if u["account"] == "class"] == [
        {"name": x.name, "account": "class", "qos": ["normal", "debug"], "default_qos": "normal"} for x in learners]
    assert "class" not in {a["name"] for a in policy.accounting()["accounts"]}, "no class, no account"


@pytest.mark.parametrize("entry", [
    {"name": "learner01;id", "uid": 2001, "key": "ssh-ed25519 " + "A" * 68},
    {"name": "student", "uid": 1000, "key": "ssh-ed25519 " + "A" * 68},
    {"name": "learner01", "uid": 0, "key": "ssh-ed25519 " + "A" * 68},
    {"name": "learner01", "uid": "2001", "key": "ssh-ed25519 " + "A" * 68},
    {"name": "learner01", "uid": 2001, "key": "ssh-ed25519 AAAA\ncommand=\"id\" ssh-ed25519 " + "A" * 68},
    {"name": "learner01", "uid": 2001, "key": "ssh-rsa " + "A" * 68},
    {"name": "learner01", "uid": True, "key": "ssh-ed25519 " + "A" * 68},
    {"name": "learner02", "uid": 2002, "key": "ssh-ed25519 " + "B" * 68},
    ["learner01", 2001],
    "learner01",
    {"name": ["learner01"], "uid": 2001, "key": "ssh-ed25519 " + "A" * 68},
])
def test_a_class_file_that_is_not_one_is_refused_whole_on_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   entry: dict) -> None:
    conf = tmp_path / "class.json"
    conf.write_text(json.dumps({"learners": [{"name": "learner02", "uid": 2002, "key": "ssh-ed25519 " + "B" * 68},
                                             entry]}))
    monkeypatch.setattr(class_users, "CONF", conf)
    with pytest.raises(SystemExit, match="not a learner"):
        class_users.read()


@pytest.mark.parametrize("doc", [
    {},
    {"learners": "learner01"},
    {"learners": [], "leaving": [{"name": "learner01", "uid": 2001}]},
    {"learners": [], "leaving": [{"name": "learner01", "uid": 2001, "keep_files": "no"}]},
    {"learners": [{"name": "learner01", "uid": 2001, "key": "ssh-ed25519 " + "A" * 68}],
     "leaving": [{"name": "learner01", "uid": 2001, "keep_files": False}]},
])
def test_a_class_file_without_its_parts_is_refused_whole_on_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     doc: dict) -> None:
    conf = tmp_path / "class.json"
    conf.write_text(json.dumps(doc))
    monkeypatch.setattr(class_users, "CONF", conf)
    with pytest.raises(SystemExit, match=r"class\.json: "):
        class_users.read()


def test_sshd_admits_every_learner_name_and_no_other() -> None:
    """sshd's patterns know only * and ? (a [0-9] class would match nobody)."""
    line = next(x for x in (ROOT / "cluster/Dockerfile").read_text().replace('"', "'").split("'")
                if x.startswith("AllowUsers"))
    patterns = [p for p in line.split()[1:] if p.startswith(classroom.PREFIX)]
    assert patterns and all(set(p) - set("abcdefghijklmnopqrstuvwxyz0123456789?*") == set() for p in patterns), line
    for i in range(1, classroom.MAX_NAMES + 1):
        assert any(fnmatch.fnmatchcase(classroom.name(i), p) for p in patterns), (classroom.name(i), line)
    assert not any(fnmatch.fnmatchcase("learner1", p) or fnmatch.fnmatchcase("learnerx", p) for p in patterns)


@pytest.mark.parametrize(("log", "said"), [
    ("Building DAG of jobs...\nRuleException:\nCalledProcessError in file x\nError in rule boom:\n    jobid: 1\n",
     "Error in rule boom:"),
    ("Building DAG of jobs...\nWorkflowError:\nNo rule to produce nope\n", "WorkflowError: No rule to produce nope"),
    ("MissingOutputException in rule a in file S, line 3:\n", "MissingOutputException in rule a in file S, line 3:"),
    ("Building DAG of jobs...\n1 of 1 steps (100%) done\nComplete log: x\n", "-"),
    # A learner's log read on the instructor's terminal: no escape reaches it, one line, bounded.
    ("\x1b]0;owned\x07\x1b[2J WorkflowError: boom\r\n", "]0;owned  [2J WorkflowError: boom"),
    ("OSError: " + "x" * 200, "OSError: " + "x" * 58 + "..."),
])
def test_the_first_error_of_a_learners_log(log: str, said: str) -> None:
    assert classroom.first_error(log) == said
