"""minihpc.rest from the host: the port the nodes listen on, the headers each
request carries (against a real local HTTP server), and a user name that is
not one refused before the controller is asked."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from minihpc import rest
from minihpc.errors import MinihpcError
from minihpc.facts import REST, REST_PORT, Facts

ROOT = Path(__file__).resolve().parents[2]


def local() -> Facts:
    return Facts(nodes=["c1"], cpus=2, mem_mb=3000, scratch_mb=512, addresses={REST: "127.0.0.1"})


def test_the_nodes_listen_where_the_host_asks() -> None:
    assert re.search(rf"^REST_PORT={REST_PORT} ", (ROOT / "cluster/entrypoint.sh").read_text(), re.M)
    assert f"/dev/tcp/127.0.0.1/{REST_PORT}" in (ROOT / "cluster/healthcheck.sh").read_text()
    assert f"hostname: {REST}\n" in (ROOT / "docker-compose.yml").read_text()


def test_each_request_carries_the_users_name_and_token_and_only_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            body = json.dumps({"errors": [{"description": "Authentication failure"}]}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(rest, "REST_PORT", server.server_address[1])
        f = local()
        a = rest.get(f, "/slurm/v0.0.42/jobs", "learner01", "tok.en.x")
        b = rest.get(f, "/slurm/v0.0.42/ping", None, None)
    finally:
        server.shutdown()
    assert (a.status, a.errors) == (401, ["Authentication failure"])
    assert seen[0]["path"] == "/slurm/v0.0.42/jobs"
    assert (seen[0]["x-slurm-user-name"], seen[0]["x-slurm-user-token"]) == ("learner01", "tok.en.x")
    assert b.status == 401 and "x-slurm-user-token" not in seen[1] and "x-slurm-user-name" not in seen[1]


def test_an_unreachable_api_is_said_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest, "REST_PORT", 9)  # discard: nothing listens
    with pytest.raises(MinihpcError, match=r"did not answer.*minihpc status"):
        rest.get(local(), "/x", None, None, timeout=2)


@pytest.mark.parametrize("user", ["learner01;id", "$(id)", "Root", "", "a" * 40, "x y"])
def test_a_user_name_that_is_not_one_is_refused_before_the_controller_is_asked(user: str) -> None:
    class Nobody:
        def root(self, *a: object, **k: object) -> None:
            raise AssertionError("the controller was asked")
    with pytest.raises(MinihpcError, match="is not a user name"):
        rest.token(Nobody(), user, 60)  # type: ignore[arg-type]


def test_an_empty_answer_is_no_error_as_22_05_says_it() -> None:
    body = {"jobs": [], "errors": [{"error_number": 9003, "error": "Nothing found with query"}]}
    assert rest.Answer(200, body).ok and rest.Answer(200, body).errors == []
    refused = {"jobs": [], "errors": [{"error_number": 1007, "error": "Protocol authentication error"}]}
    assert not rest.Answer(200, refused).ok
