"""The class's live page: a small HTTP server on the host, GET only.

Who may look: the instructor, by the key in <state>/class/page-key, and
each learner, by the key in their own <state>/class/NAME/page-key (beside
their SSH key, for the instructor to hand out). A key comes once in the URL
(?key=...), is then kept in an HttpOnly, SameSite=Strict cookie and the URL
is cleaned; a learner removed from the class, or a key file removed, is
refused from the next request on. Without a key the server says only that
a key is needed.

What it serves: the page (static files of this package, no other origin:
the Content-Security-Policy says so), its data (/state.json, from
minihpc.page.collect) and the timeline picture (/timeline.svg). There is
no handler for any method that changes anything, here or in SLURM.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import threading
import time
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from minihpc import classroom, timeline
from minihpc.page import picture
from minihpc.page.collect import Collector, dumps

COOKIE = "minihpc_page"
INSTRUCTOR = "instructor"
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/page.js": ("page.js", "text/javascript; charset=utf-8"),
          "/page.css": ("page.css", "text/css; charset=utf-8"), "/icon.svg": ("icon.svg", "image/svg+xml")}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store", "Cross-Origin-Resource-Policy": "same-origin",
}
ARRIVE = (b'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/">'
          b'<title>minihpc</title></head><body><p><a href="/">Open the page</a></p></body></html>\n')
# Connections served at once: each holds a thread; past this a new one is closed at once.
MAX_CONNECTIONS = 128
KEY_FILE = "page-key"
URL_FILE = "page-url"


def _secret_file(path: Path, content: str) -> None:
    """Write a file only its owner reads (made 0600 before a byte is in it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(content)


def _key(path: Path) -> str:
    """The key in `path`, made if there is none."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if len(key) < 32:
        key = secrets.token_urlsafe(32)
        _secret_file(path, key + "\n")
    return key


class Keys:
    """Which key belongs to whom: the instructor's, and each learner's in the class now (looked at
    again when class.json changes, so a removed learner's key stops working)."""

    def __init__(self, run_dir: Path, base_url: str) -> None:
        self.run_dir, self.base_url = run_dir, base_url
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self._owners: dict[str, tuple[str, Path]] = {}  # key: whose, and the file that holds it
        self._joined: dict[str, float] = {}

    def class_dir(self) -> Path:
        d = self.run_dir / "class"
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return d

    def instructor_url(self) -> str:
        return f"{self.base_url}/?key={_key(self.class_dir() / KEY_FILE)}"

    def refresh(self) -> None:
        """Know the class as class.json says it is now (each learner's key and URL file made)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        doc = self.run_dir / "etc" / classroom.FILE
        stamp = doc.stat().st_mtime_ns if doc.exists() else 0
        if stamp == self._stamp:
            return
        owners = {_key(self.class_dir() / KEY_FILE): (INSTRUCTOR, self.class_dir() / KEY_FILE)}
        joined = {}
        for learner in classroom.read(self.run_dir):
            d = classroom.key_dir(self.run_dir, learner.name)
            if d.is_dir():  # made with their SSH key; a half-removed learner has none
                key = _key(d / KEY_FILE)
                _secret_file(d / URL_FILE, f"{self.base_url}/?key={key}\n")
                owners[key] = (learner.name, d / KEY_FILE)
                joined[learner.name] = timeline.stamp(learner.added) or 0.0
        self._owners, self._joined, self._stamp = owners, joined, stamp

    def joined(self, learner: str) -> float:
        """When the learner joined the class (their jobs are the ones since)."""
        with self._lock:
            return self._joined.get(learner, float("inf"))

    def owner(self, key: str | None) -> str | None:
        """INSTRUCTOR, a learner's name, or None (no key, or not one of ours)."""
        if not key:
            return None
        with self._lock:
            self._refresh()
            for known, (who, path) in self._owners.items():
                if hmac.compare_digest(known.encode(), key.encode()):
                    # A key counts while its file holds it: removed (class remove, or by hand to revoke it), no.
                    try:
                        held = path.read_text().strip()
                    except OSError:
                        return None
                    return who if hmac.compare_digest(held.encode(), key.encode()) else None
            return None


def loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def handler(collector: Collector, keys: Keys, address: str) -> type[BaseHTTPRequestHandler]:
    class Page(BaseHTTPRequestHandler):
        server_version = "minihpc-page"
        sys_version = ""
        timeout = 15  # a client that sends nothing holds its thread no longer
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
            pass  # the keys travel in URLs once: nothing is logged

        def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in {**HEADERS, "Content-Type": kind, "Content-Length": str(len(body)), **(extra or {})}.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _refuse(self, status: int, why: str) -> None:
            self._send(status, f"{why}\n".encode(), "text/plain; charset=utf-8")

        def _cookie_key(self) -> str | None:
            try:
                c = SimpleCookie(self.headers.get("Cookie", ""))
            except CookieError:
                return None
            return c[COOKIE].value if COOKIE in c else None

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            port = self.server.server_address[1]
            hosts = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]", address)}
            if loopback(address) and self.headers.get("Host", "") not in hosts:
                return self._refuse(HTTPStatus.MISDIRECTED_REQUEST, "this page answers only to its own address")
            url = urlsplit(self.path)
            if url.path == "/" and "key" in parse_qs(url.query):
                key = parse_qs(url.query)["key"][0]
                if keys.owner(key) is None:
                    return self._refuse(HTTPStatus.FORBIDDEN, "this key opens no page here; ask the instructor "
                                                              "for yours")
                # The key leaves the URL (history, screen-sharing) for a cookie scripts cannot read. A page of
                # ours moves on to /, not a redirect: after a link from elsewhere (a chat, a mail), the browser
                # would send no SameSite=Strict cookie along a redirect, and the first visit would be refused.
                return self._send(HTTPStatus.OK, ARRIVE, "text/html; charset=utf-8",
                                  {"Set-Cookie": f"{COOKIE}={key}; HttpOnly; SameSite=Strict; Path=/"})
            if url.path in STATIC and url.path != "/":  # the page's own files: no data in them
                name, kind = STATIC[url.path]
                return self._send(HTTPStatus.OK, resources.files(__package__).joinpath(name).read_bytes(), kind)
            if url.path not in ("/", "/state.json", "/timeline.svg"):
                return self._refuse(HTTPStatus.NOT_FOUND, "no such page")
            who = keys.owner(self._cookie_key())
            if who is None:
                return self._refuse(HTTPStatus.FORBIDDEN, "this page needs its key: open the URL the instructor "
                                                          "gave you (it ends in ?key=...)")
            viewer = None if who == INSTRUCTOR else who
            if url.path == "/":
                name, kind = STATIC["/"]
                return self._send(HTTPStatus.OK, resources.files(__package__).joinpath(name).read_bytes(), kind)
            view = collector.view(viewer) if viewer is None else collector.view(viewer, keys.joined(viewer))
            if url.path == "/state.json":
                view["alt"] = picture.describe(view["bars"], time.time(), view["window_s"])
                return self._send(HTTPStatus.OK, dumps(view), "application/json")
            body = picture.svg(view["bars"], list(collector.facts.nodes), collector.facts.cpus, time.time(),
                               view["window_s"], "user" if viewer is None else "rule")
            return self._send(HTTPStatus.OK, body.encode(), "image/svg+xml")

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def _not_allowed(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"this page only reads: GET\n", "text/plain; charset=utf-8",
                       {"Allow": "GET, HEAD", "Connection": "close"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    return Page


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a viewer's open connection never holds the server's exit
    request_queue_size = MAX_CONNECTIONS  # the listen backlog (socketserver's 5 makes a class's browsers wait)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: who holds connections open cannot take more threads
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve(collector: Collector, keys: Keys, address: str, port: int) -> Server:
    """Bound, ready to answer (serve_forever) once the collector is started."""
    return Server((address, port), handler(collector, keys, address))
