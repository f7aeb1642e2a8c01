"""A real headless browser for the live page's proofs: Debian's chromium in a
container of the project's own image (tests/browser/Dockerfile), on the
host's network so that it reaches the page on 127.0.0.1 as a user's browser
would, driven over the Chrome DevTools Protocol (websocket-client): load a
page, read its DOM, press Tab, take screenshots, and collect every console
error, uncaught exception and failed load (a CSP violation is one)."""

from __future__ import annotations

import base64
import json
import queue
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import websocket

from minihpc import ROOT, releases

# What ENGINEERING.md's probe found chromium needs on these machines: no sandbox (a container), no GPU,
# and none of its own traffic (the closed network refuses it, many connections at a time).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1800", "--user-data-dir=/tmp/profile")


def image(release: str = releases.DEFAULT) -> str:
    """The browser's image, built on the release's Debian base (the layer cache makes a rebuild instant)."""
    tag = "minihpc/browser:" + releases.named(release).debian
    subprocess.run(["docker", "build", "-q", "-t", tag, "--build-arg",
                    f"BASE_IMAGE={releases.named(release).base_image}", str(ROOT / "tests/browser")],
                   check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900)
    return tag


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    def __init__(self, tag: str) -> None:
        self.port = free_port()
        self.name = f"minihpc-browser-{secrets.token_hex(4)}"
        subprocess.run(["docker", "run", "-d", "--rm", "--name", self.name, "--network", "host", "--shm-size=256m",
                        tag, *FLAGS, f"--remote-debugging-port={self.port}", "--remote-debugging-address=127.0.0.1",
                        "about:blank"], check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        self.errors: list[str] = []
        self._replies: dict[int, queue.Queue] = {}
        self._events: queue.Queue = queue.Queue()
        self._next = 0
        self._lock = threading.Lock()
        target = self._target()
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.ws.settimeout(None)  # the reader waits as long as the page is quiet; each call has its own timeout
        threading.Thread(target=self._read, daemon=True).start()
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def _target(self) -> dict:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    return pages[0]
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True, check=False)
                raise AssertionError(f"chromium did not start: {logs.stdout[-1500:]}{logs.stderr[-1500:]}")
            time.sleep(0.3)

    def _read(self) -> None:
        while True:
            try:
                msg = json.loads(self.ws.recv())
            except (websocket.WebSocketException, OSError, ValueError):
                return
            if "id" in msg:
                self._replies.setdefault(msg["id"], queue.Queue()).put(msg)
                continue
            method, p = msg.get("method"), msg.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                self.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                          for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                self.errors.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                self.errors.append(f"log: {e.get('text')} {e.get('url', '')}")
            self._events.put(msg)

    def call(self, method: str, timeout: float = 30, **params) -> dict:
        with self._lock:
            self._next += 1
            n = self._next
            self._replies.setdefault(n, queue.Queue())
            self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        reply = self._replies[n].get(timeout=timeout)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str, timeout: float = 30) -> None:
        while not self._events.empty():
            self._events.get_nowait()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._events.get(timeout=1).get("method") == "Page.loadEventFired":
                    return
            except queue.Empty:
                pass
        raise AssertionError(f"{url.split('?')[0]} did not load within {timeout} s")

    def eval(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20, what: str = ""):
        """The expression's value once it is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression)
            except AssertionError:  # between two pages (the key's page moving on to /): ask again
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what or expression}")
            time.sleep(0.25)

    def press(self, key: str) -> dict:
        """Press a key (Tab, Enter or Space) as a keyboard does; what has the keyboard focus then."""
        code, text = {"Tab": (9, ""), "Enter": (13, "\r"), "Space": (32, " ")}[key]
        name = " " if key == "Space" else key
        self.call("Input.dispatchKeyEvent", type="keyDown", key=name, code=key, windowsVirtualKeyCode=code,
                  **({"text": text} if text else {}))
        self.call("Input.dispatchKeyEvent", type="keyUp", key=name, code=key, windowsVirtualKeyCode=code)
        return self.focused()

    def tab(self) -> dict:
        return self.press("Tab")

    def focused(self) -> dict:
        return self.eval("(() => { const e = document.activeElement; return {tag: e.tagName, id: e.id, "
                         "text: e.textContent.trim().slice(0, 60), visible: e.getBoundingClientRect().width > 0}; })()")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)


class PageServer:
    """`minihpc class page` as the instructor runs it, on a port of its own; url is the instructor's."""

    def __init__(self, *args: str) -> None:
        import sys
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "minihpc", "class", "page", "--port", str(self.port),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     stdin=subprocess.DEVNULL, cwd=ROOT)
        first = self.proc.stdout.readline()
        if "instructor's view: " not in first:
            self.proc.kill()
            raise AssertionError(f"minihpc class page did not start: {first}{self.proc.stdout.read()[-2000:]}")
        self.url = first.split("instructor's view: ", 1)[1].strip()
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, key: str) -> tuple[int, bytes]:
        """GET path as the holder of `key` (a browser's cookie)."""
        req = urllib.request.Request(self.base + path, headers={"Cookie": f"minihpc_page={key}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def state(self, key: str) -> dict:
        status, body = self.get("/state.json", key)
        assert status == 200, (status, body[:300])
        return json.loads(body)

    def close(self) -> str:
        """Stop it as Ctrl-C does; what it printed."""
        import signal
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out
