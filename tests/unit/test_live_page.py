"""The class's live page without a cluster: its data read from either REST
API's shapes, its faults in force, its timeline picture and words, and its
server's doors (keys, cookies, methods, hosts, headers). The page on a real
cluster, in a real browser: tests/cluster/test_page.py and test_class.py."""

from __future__ import annotations

import http.client
import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from minihpc import classroom
from minihpc.commands.classroom import page_address
from minihpc.errors import BadInput
from minihpc.page import collect, picture, server

# -- either API's shapes --------------------------------------------------------------

def test_numbers_states_and_lists_read_from_either_api() -> None:
    assert collect.num({"set": True, "infinite": False, "number": 5}) == 5
    assert collect.num({"set": False, "infinite": False, "number": 0}) is None
    assert collect.num({"set": True, "infinite": True, "number": 0}) is None
    assert collect.num(7) == 7 and collect.num(True) is None and collect.num("7") is None
    assert collect.words(["IDLE", "DRAIN"]) == ["IDLE", "DRAIN"] and collect.words("idle") == ["idle"]
    newer = {"name": "c1", "state": ["IDLE", "DRAIN"], "cpus": 2, "alloc_cpus": 0, "real_memory": 3000,
             "alloc_memory": 0, "partitions": ["short", "long"], "reason": "maintenance"}
    older = {**newer, "state": "idle", "partitions": ["short", "long"]}
    assert collect.node_row(newer) == {"name": "c1", "state": "idle drain", "cpus": 2, "alloc_cpus": 0,
                                       "memory_mb": 3000, "alloc_memory_mb": 0, "partitions": "short,long",
                                       "reason": "maintenance"}
    assert collect.node_row(older)["state"] == "idle"


def test_a_partition_and_a_qos_from_either_api() -> None:
    newer = {"name": "short", "nodes": {"configured": "c[1-2]"}, "partition": {"state": ["UP"]},
             "maximums": {"time": {"set": True, "infinite": False, "number": 240}}, "qos": {"allowed": ""}}
    older = {"name": "short", "nodes": "c[1-2]", "state": "UP", "max_time_limit": 240, "allowed_qos": "",
             "qos": ""}
    want = {"name": "short", "nodes": "c[1-2]", "state": "up", "max_time_min": 240, "qos": "any"}
    assert collect.partition_row(newer) == want == collect.partition_row(older)
    assert collect.partition_row({**older, "allowed_qos": "debug,normal"})["qos"] == "debug,normal"
    newer_q = {"name": "debug", "priority": {"set": True, "infinite": False, "number": 100}, "description": "debug",
               "limits": {"max": {"wall_clock": {"per": {"job": {"set": True, "infinite": False, "number": 60}}}}}}
    older_q = {"name": "debug", "priority": 100, "description": "debug",
               "limits": {"max": {"wall_clock": {"per": {"qos": None, "job": 60}}}}}
    assert collect.qos_row(newer_q) == collect.qos_row(older_q) == {"name": "debug", "priority": 100,
                                                                   "max_wall_min": 60, "description": "debug"}


def test_a_job_from_slurmctld_and_from_slurmdbd_reads_the_same() -> None:
    ctld = {"job_id": 7, "name": "rule_a", "user_name": "learner01", "job_state": ["RUNNING"], "comment": "rule_a",
            "state_reason": "None", "nodes": "c1", "cpus": {"set": True, "infinite": False, "number": 2},
            "submit_time": {"set": True, "infinite": False, "number": 100},
            "start_time": {"set": True, "infinite": False, "number": 110},
            "end_time": {"set": True, "infinite": False, "number": 9999}}
    dbd = {"job_id": 7, "name": "rule_a", "user": "learner01", "state": {"current": ["RUNNING"]}, "nodes": "c1",
           "comment": {"job": "rule_a_wildcards_x", "administrator": ""},
           "required": {"CPUs": 2}, "time": {"submission": 100, "start": 110, "end": 9999}}
    old = {"job_id": 7, "name": "rule_a", "user_name": "learner01", "job_state": "RUNNING", "nodes": "c1",
           "cpus": 2, "submit_time": 100, "start_time": 110, "end_time": 9999, "state_reason": "None"}
    rows = [collect.job_row(j) for j in (ctld, dbd, old)]
    assert all(r == {**rows[0], "reason": r["reason"], "rule": r["rule"]} for r in rows), rows
    assert rows[0]["id"] == "7" and rows[0]["state"] == "RUNNING" and rows[0]["cpus"] == 2
    assert rows[0]["rule"] == "a" and rows[2]["rule"] == "rule_a"  # no comment: the job's name


def test_faults_in_force_say_what_is_broken_and_how_to_undo_it() -> None:
    ps = ["slurmctld\trunning\tminihpc_net", "c2\texited\t", "c1\trunning\t", "login\trunning\tminihpc_net"]
    nodes = [{"name": "c1", "state": "idle", "reason": ""},
             {"name": "c2", "state": "down*", "reason": "Not responding"}]
    nfs = "profile: lag-10 (632bbe737c29)\n  fault: {\"op\": \"write\"}\n"
    got = collect.faults_in_force(ps, nodes, nfs)
    assert got == [{"what": "c2", "how": "container exited (minihpc fault start c2)"},
                   {"what": "c1", "how": "cut off the network (minihpc fault reconnect c1)"},
                   {"what": "c2", "how": "Slurm: down* (Not responding)"},
                   {"what": "/shared", "how": "NFS fault: {\"op\": \"write\"}"}], got
    assert collect.faults_in_force(["c1\trunning\tnet"], [{"name": "c1", "state": "idle", "reason": ""}], "") == []
    assert collect.nfs_profile(nfs)["name"] == "lag-10" and collect.nfs_profile("")["name"] == "unknown"


# -- the timeline ----------------------------------------------------------------------

def bar(job: str, user: str, rule: str, node: str, start: float | None, end: float | None, state: str) -> dict:
    return {"job_id": job, "user": user, "rule": rule, "node": node, "cpus": 1, "submit": 0, "start": start,
            "end": end, "state": state}


def test_the_picture_draws_each_started_job_and_escapes_what_users_named() -> None:
    now = 10_000.0
    rows = [bar("1", "student", "<script>alert(1)</script>", "c1", now - 120, now - 60, "COMPLETED"),
            bar("2", "learner01", "b", "c2", now - 30, None, "RUNNING"),
            bar("3", "learner01", "c", "c2", now - 50, now - 10, "FAILED"),
            bar("4", "student", "d", "None assigned", None, None, "PENDING")]
    svg = picture.svg(rows, ["c1", "c2"], 2, now, 1800, "user")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<title>job ") == 3  # the three that started
    assert svg.count('stroke="#b00020"') == 2  # the failed one outlined, and the legend says what that means
    assert ">learner01</text>" in svg and ">student</text>" in svg  # the legend: whose each colour is
    assert "-5 min" in svg and ">now<" in svg  # five minutes across: the earliest began two minutes ago
    words = picture.describe(rows, now, 1800)
    assert words == ("Timeline of the last 5 minutes: 4 job(s) (1 completed, 1 failed, 1 pending, 1 running) of "
                     "learner01, student, on c1, c2."), words
    assert picture.describe([], now, 1800) == "Timeline of the last 5 minutes: no jobs."
    assert picture.span([bar("1", "u", "r", "c1", now - 3 * 3600, None, "RUNNING")], now, 1800) == 1800
    assert picture.colour("student") == picture.colour("student")
    import xml.dom.minidom
    odd = picture.svg([bar("5", "u", "a\x01b\x1b[31m", "c1", now - 5, None, "RUNNING")], ["c1"], 1, now, 1800, "rule")
    assert "a?b?[31m" in odd and xml.dom.minidom.parseString(odd)  # still a picture


# -- the server --------------------------------------------------------------------------

class FakeCollector:
    """What the server asks of the collector: a view per viewer (the real one on a cluster: test_page.py)."""

    def __init__(self) -> None:
        self.facts = SimpleNamespace(nodes=["c1", "c2"], cpus=2)
        self.asked: list[str | None] = []

    def view(self, viewer: str | None, joined: float = 0.0) -> dict:
        self.asked.append(viewer)
        return {"viewer": viewer or "instructor", "bars": [], "window_s": 1800}

    def start(self) -> None:
        pass


@pytest.fixture
def page(tmp_path: Path) -> Iterator[SimpleNamespace]:
    learners = [classroom.Learner(classroom.name(i), classroom.FIRST_UID + i - 1, "ssh-ed25519 AAAA") for i in (1, 2)]
    (tmp_path / "etc").mkdir()
    classroom._write(tmp_path, learners, [])
    for x in learners:
        classroom.key_dir(tmp_path, x.name).mkdir(parents=True)
    collector = FakeCollector()
    httpd = server.serve(collector, keys := server.Keys(tmp_path, "http://127.0.0.1:0"), "127.0.0.1", 0)
    collector.start()
    port = httpd.server_address[1]
    keys.base_url = f"http://127.0.0.1:{port}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    keys.refresh()
    try:
        yield SimpleNamespace(port=port, keys=keys, collector=collector, run_dir=tmp_path, httpd=httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()


def request(port: int, path: str, method: str = "GET", cookie: str | None = None, host: str | None = None
            ) -> http.client.HTTPResponse:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host or f"127.0.0.1:{port}", **({"Cookie": cookie} if cookie else {})}
    c.request(method, path, headers=headers)
    r = c.getresponse()
    r.body = r.read()
    return r


def key_of(run_dir: Path, who: str) -> str:
    d = run_dir / "class" if who == "instructor" else classroom.key_dir(run_dir, who)
    return (d / server.KEY_FILE).read_text().strip()


def test_no_key_gets_no_data_and_a_key_becomes_a_cookie_scripts_cannot_read(page: SimpleNamespace) -> None:
    for path in ("/", "/state.json", "/timeline.svg"):
        r = request(page.port, path)
        assert r.status == 403 and b"needs its key" in r.body, (path, r.status)
    assert request(page.port, "/?key=" + "x" * 43).status == 403
    assert request(page.port, "/state.json", cookie=f"{server.COOKIE}={'x' * 43}").status == 403
    assert page.collector.asked == []
    key = key_of(page.run_dir, "instructor")
    r = request(page.port, f"/?key={key}")
    # A page that moves on to / (a redirect would carry no SameSite=Strict cookie after a link from elsewhere).
    assert r.status == 200 and b'<meta http-equiv="refresh" content="0;url=/">' in r.body
    assert r.getheader("Set-Cookie") == f"{server.COOKIE}={key}; HttpOnly; SameSite=Strict; Path=/"
    r = request(page.port, "/state.json", cookie=f"{server.COOKIE}={key}")
    assert r.status == 200 and json.loads(r.body)["viewer"] == "instructor"
    assert "script-src 'self'" in r.getheader("Content-Security-Policy")
    assert r.getheader("X-Content-Type-Options") == "nosniff" and r.getheader("Cache-Control") == "no-store"
    r = request(page.port, "/timeline.svg", cookie=f"{server.COOKIE}={key}")
    assert r.status == 200 and r.getheader("Content-Type") == "image/svg+xml" and r.body.startswith(b"<svg")
    assert request(page.port, "/page.js").status == 200  # the page's own code holds no data


def test_each_learner_gets_their_own_view_until_they_leave_the_class(page: SimpleNamespace) -> None:
    k1 = key_of(page.run_dir, "learner01")
    url = (classroom.key_dir(page.run_dir, "learner01") / server.URL_FILE).read_text().strip()
    assert url == f"http://127.0.0.1:{page.port}/?key={k1}"
    for name in (server.KEY_FILE, server.URL_FILE):
        mode = (classroom.key_dir(page.run_dir, "learner01") / name).stat().st_mode
        assert stat.S_IMODE(mode) == 0o600, oct(mode)
    assert stat.S_IMODE((page.run_dir / "class" / server.KEY_FILE).stat().st_mode) == 0o600
    r = request(page.port, "/state.json", cookie=f"{server.COOKIE}={k1}")
    assert json.loads(r.body)["viewer"] == "learner01" and page.collector.asked == ["learner01"]
    assert k1 != key_of(page.run_dir, "learner02") != key_of(page.run_dir, "instructor")
    # Removed: their key directory goes first (class remove), then class.json says so.
    for f in classroom.key_dir(page.run_dir, "learner01").iterdir():
        f.unlink()
    classroom.key_dir(page.run_dir, "learner01").rmdir()
    assert request(page.port, "/state.json", cookie=f"{server.COOKIE}={k1}").status == 403
    classroom._write(page.run_dir, [classroom.Learner("learner02", classroom.FIRST_UID + 1, "k")], [])
    assert request(page.port, "/state.json", cookie=f"{server.COOKIE}={k1}").status == 403
    k2 = key_of(page.run_dir, "learner02")
    assert request(page.port, "/state.json", cookie=f"{server.COOKIE}={k2}").status == 200


def test_a_key_file_removed_revokes_the_key_at_once(page: SimpleNamespace) -> None:
    k1, mine = key_of(page.run_dir, "learner01"), key_of(page.run_dir, "instructor")
    assert request(page.port, "/state.json", cookie=f"{server.COOKIE}={k1}").status == 200
    (classroom.key_dir(page.run_dir, "learner01") / server.KEY_FILE).unlink()
    (page.run_dir / "class" / server.KEY_FILE).unlink()
    assert request(page.port, "/state.json", cookie=f"{server.COOKIE}={k1}").status == 403
    assert request(page.port, "/state.json", cookie=f"{server.COOKIE}={mine}").status == 403


def test_connections_past_the_cap_are_closed_not_threaded(page: SimpleNamespace) -> None:
    import socket
    import time
    held = [socket.create_connection(("127.0.0.1", page.port)) for _ in range(server.MAX_CONNECTIONS)]
    deadline = time.monotonic() + 10
    while page.httpd.slots._value and time.monotonic() < deadline:  # each accepted, a thread each
        time.sleep(0.05)
    extra = socket.create_connection(("127.0.0.1", page.port))
    extra.settimeout(5)
    extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert extra.recv(100) == b"", "a connection past the cap was served"
    for c in held:
        c.close()
    time.sleep(0.5)
    assert request(page.port, "/page.js").status == 200  # freed: served again


class FakeREST(collect.Collector):
    """A Collector whose REST answers are given (the real ones: tests/cluster/test_page.py)."""

    def __init__(self, answers: dict[str, list[dict]]) -> None:
        super().__init__(SimpleNamespace(facts=SimpleNamespace(slurm="24.11")))
        self.answers = answers

    def _rest(self, key: str, path: str, user: str) -> list[dict]:
        return self.answers["slurmdb" if path.startswith("/slurmdb/") else "slurm"]


def test_a_learner_sees_only_their_own_jobs_since_they_joined_whatever_the_api_says() -> None:
    def job(i: int, user: str, submit: int) -> dict:
        return {"job_id": i, "name": f"j{i}", "user_name": user, "job_state": ["PENDING"], "submit_time": submit}
    c = FakeREST({"slurm": [job(1, "learner01", 50), job(2, "learner02", 200), job(3, "learner01", 200)],
                  "slurmdb": [job(4, "learner02", 300)]})
    jobs, errors = c.mine("learner01", joined=100)
    assert [j["id"] for j in jobs] == ["3"] and errors == [], jobs
    c.shared.errors = ["queue: sacct's output is not rows: 'root|learner02|secret'"]
    view = c.view("learner01", joined=100)
    assert "learner02" not in json.dumps(view) and "secret" not in json.dumps(view), view
    assert view["errors"] == ["some of the cluster's state could not be read just now (the instructor's page "
                              "says what)"]


def test_the_page_only_reads_and_answers_only_to_its_own_address(page: SimpleNamespace) -> None:
    key = key_of(page.run_dir, "instructor")
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        r = request(page.port, "/state.json", method=method, cookie=f"{server.COOKIE}={key}")
        assert r.status == 405 and r.getheader("Allow") == "GET, HEAD", (method, r.status)
    # Another name resolving to this machine (DNS rebinding) gets nothing, even with the key.
    r = request(page.port, "/state.json", cookie=f"{server.COOKIE}={key}", host=f"attacker.example:{page.port}")
    assert r.status == 421
    assert request(page.port, "/../etc/passwd", cookie=f"{server.COOKIE}={key}").status == 404
    assert request(page.port, "/state.json", cookie="minihpc_page=\"unterminated").status == 403
    assert page.collector.asked == []


def test_a_key_file_made_by_someone_else_is_not_followed(page: SimpleNamespace, tmp_path: Path) -> None:
    d = classroom.key_dir(page.run_dir, "learner02")
    (d / server.URL_FILE).unlink()
    target = tmp_path / "elsewhere"
    (d / server.URL_FILE).symlink_to(target)
    page.keys._stamp = None
    with pytest.raises(OSError):
        page.keys.refresh()
    assert not target.exists()


@pytest.mark.parametrize(("address", "publish", "message"), [
    ("10.0.0.5", False, "beyond this machine"), ("0.0.0.0", False, "beyond this machine"),
    ("a;b", False, "not an IPv4 address"), ("::1", False, "not an IPv4 address")])
def test_an_address_beyond_loopback_needs_publish(address: str, publish: bool, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        page_address(address, publish)
    assert page_address("127.0.0.1", False) == "127.0.0.1" and page_address("10.0.0.5", True) == "10.0.0.5"
