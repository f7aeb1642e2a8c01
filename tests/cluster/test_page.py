"""The class's live page (minihpc class page) in a real headless browser
(Debian's chromium, tests/browser.py), served by the project's own command
from the live cluster:

- during a real Snakemake run (tests/workflows/byow, `minihpc run`), the
  nodes, the queue and the timeline appear and update; job names a user
  chose (markup among them) stay text; the page has no console errors; its
  pictures have text alternatives and the keyboard reaches its controls;
- the instructor's demos (`minihpc fault kill c2`, `minihpc nfs set
  lag-10`, `minihpc busy start`) show on it within seconds, each undone after.

Screenshots and how long each demo took to show go to .proof/class/page/.
A learner's page (their jobs, others' as counts): tests/cluster/test_class.py."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import browser
import pytest
from support import cli, eventually

from minihpc import PROOF_DIR, ROOT, runner

OUT = PROOF_DIR / "class" / "page"
# Markup in a job's name: shown as text, never run (textContent, and the page's CSP).
MARKUP = "<img src=x onerror=document.title='owned'>"


@pytest.fixture(scope="module")
def page() -> Iterator[browser.PageServer]:
    server = browser.PageServer()
    try:
        yield server
    finally:
        out = server.close()
        assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def chromium() -> Iterator[browser.Browser]:
    b = browser.Browser(browser.image())
    try:
        yield b
    finally:
        b.close()


def rows(b: browser.Browser, table: str) -> list[list[str]]:
    return b.eval(f"[...document.querySelectorAll('#{table} tbody tr')].map(r => [...r.children].map(c => "
                  "c.textContent))")


@pytest.mark.smoke
def test_the_pages_data_reads_this_release(page: browser.PageServer, client) -> None:
    """What the page shows, read from this Slurm release's REST API (each names and nests its fields its
    own way) and the cluster client, with nothing it could not read."""
    f = client.facts
    state = page.state(page.url.split("key=", 1)[1])
    assert state["errors"] == [] and state["slurm"] == f.slurm, state["errors"]
    assert {n["name"] for n in state["nodes"]} == set(f.nodes)
    assert all(n["cpus"] == f.cpus and n["memory_mb"] and n["state"] for n in state["nodes"]), state["nodes"]
    parts = {p["name"]: p for p in state["partitions"]}
    assert set(parts) == set(f.partitions) and all(p["max_time_min"] for p in parts.values()), parts
    assert {"normal", "debug"} <= {q["name"] for q in state["qos"]}
    assert next(q for q in state["qos"] if q["name"] == "debug")["max_wall_min"] == 60, state["qos"]
    assert state["nfs"]["name"] != "unknown" and {s["node"] for s in state["scratch"]} == set(f.client_nodes)


@pytest.mark.cost(120)
def test_the_page_shows_a_run_as_it_goes_in_a_real_browser(page: browser.PageServer, chromium: browser.Browser,
                                                           client, tmp_path) -> None:
    b, f = chromium, client.facts
    b.open(page.url)
    b.wait_for("document.body.dataset.updated", what="the page's first data")
    assert b.eval("location.search") == "", "the key stays in the URL"
    assert {r[0] for r in rows(b, "nodes")} == set(f.nodes)
    assert {r[0] for r in rows(b, "partitions")} == set(f.partitions)
    assert "normal" in {r[0] for r in rows(b, "qos")}
    assert b.eval("document.getElementById('nfs').textContent").startswith("profile: ")
    assert {r[0] for r in rows(b, "scratch")} == set(f.client_nodes)
    # A job whose name is markup, queued behind the run's: text on the page, never an element or a script.
    job = client.sh(f"sbatch --parsable -t 2 -J {shlex.quote(MARKUP)} --begin=now+600 --wrap true").out.strip()
    assert job.isdigit(), job
    wf = tmp_path / "byow"
    shutil.copytree(ROOT / "tests/workflows/byow", wf)
    since = client.now()
    # Its rule `fail` fails on purpose: the timeline shows a failed job too. Side by side with other
    # tests' jobs of the same user, the run's own are those named by its run ID.
    run = subprocess.Popen([sys.executable, "-m", "minihpc", "run", str(wf), "--name", "test-page", "--fresh", "--",
                            "--keep-going"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           stdin=subprocess.DEVNULL)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(run.stdout), daemon=True)
    reader.start()
    try:
        run_id = eventually(lambda: runner.run_id("".join(said)), timeout=180,
                            what=lambda: "the run's ID in its output: " + "".join(said)[-2000:])
        ours = (f"[...document.querySelectorAll('#jobs tbody tr')].filter(r => r.children[2].textContent === "
                f"'{run_id}')")
        b.wait_for(f"{ours}.some(r => r.children[3].textContent === 'RUNNING')", timeout=180,
                   what="a job of the run running in the page's queue")
        b.wait_for(f"[...document.querySelectorAll('#jobs tbody tr')].some(r => r.children[2].textContent === "
                   f"{json.dumps(MARKUP)})", what="the job named with markup in the queue")
        assert b.eval("document.title") != "owned" and b.eval("document.querySelectorAll('#jobs img').length") == 0
        assert any(r[0] == f.lab_user and int(r[1]) >= 1 for r in rows(b, "queue")), rows(b, "queue")
        busy = b.wait_for("[...document.querySelectorAll('#nodes tbody tr')].filter(r => !r.children[2]"
                          ".textContent.startsWith('0 of')).map(r => r.children[0].textContent)",
                          what="a node with CPUs in use")
        assert set(busy) <= set(f.nodes)
        b.wait_for(f"document.getElementById('timeline').alt.includes('{f.lab_user}')", timeout=30,
                   what="the run in the timeline's text alternative")
        b.screenshot(OUT / "run.png")
        assert run.wait(timeout=600) == 1, "".join(said)[-3000:]
        reader.join(timeout=30)
        assert "Error in rule fail:" in "".join(said), "".join(said)[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
        client.sh(f"scancel {job}; rm -rf {f.shared}/test-page")
    # Updated: the run's jobs leave the queue, and the timeline has each as sacct ended it.
    b.wait_for(f"{ours}.length === 0", timeout=30, what="the run's jobs gone from the queue")
    ended = {r["JobID"]: r["State"].split()[0]
             for r in client.sacct(since, ("JobID", "JobName", "State")) if r["JobName"] == run_id}
    assert "FAILED" in ended.values() and "COMPLETED" in ended.values(), ended
    key = page.url.split("key=", 1)[1]
    eventually(lambda: {b_["job_id"]: b_["state"] for b_ in page.state(key)["bars"] if b_["job_id"] in ended}
               == ended, timeout=30, what="the run's jobs in the page's timeline as sacct has them")
    b.wait_for("/completed.*failed|failed.*completed/.test(document.getElementById('timeline').alt)", timeout=30,
               what="the timeline's words: completed jobs, and failed")
    b.wait_for("document.getElementById('timeline').complete && "
               "document.getElementById('timeline').naturalWidth > 0", what="the timeline drawn")
    b.screenshot(OUT / "after-run.png")
    # Accessibility basics: every picture says what it shows, tables say what they hold, the keyboard
    # reaches the controls in order and the skip link moves the focus.
    assert b.eval("[...document.images].every(i => i.alt.trim().length > 20)")
    assert b.eval("document.documentElement.lang") == "en"
    assert b.eval("[...document.querySelectorAll('table')].every(t => t.caption && t.caption.textContent)")
    assert b.eval("[...document.querySelectorAll('thead th')].every(t => t.scope === 'col')")
    b.eval("document.activeElement.blur(); window.scrollTo(0, 0)")
    first = b.tab()
    assert first["tag"] == "A" and first["text"] == "Skip to faults in force" and first["visible"], first
    b.press("Enter")
    b.wait_for("document.activeElement.id === 'faults'", what="the skip link's target focused")
    b.eval("document.activeElement.blur()")
    b.tab()
    pause = b.tab()
    assert pause["id"] == "pause", pause
    b.press("Space")
    assert b.eval("document.getElementById('pause').getAttribute('aria-pressed')") == "true"
    b.press("Enter")
    assert b.eval("document.getElementById('pause').getAttribute('aria-pressed')") == "false"
    assert b.errors == [], b.errors


def test_a_port_in_use_is_refused_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("class", "page", "--port", str(port))
    assert r.returncode == 2 and f"cannot serve on 127.0.0.1:{port}: Address already in use; choose another --port" \
        in r.stderr, r.stdout + r.stderr
    assert r.stdout == "", r.stdout


def shown_within(b: browser.Browser, expression: str, what: str, timeout: float = 20) -> float:
    t0 = time.monotonic()
    b.wait_for(expression, timeout=timeout, what=what)
    return round(time.monotonic() - t0, 1)


@pytest.mark.alone  # it kills a compute node, slows the shared filesystem and fills the queue
@pytest.mark.cost(90)
def test_the_instructors_demos_show_on_the_page_within_seconds(page: browser.PageServer,
                                                              chromium: browser.Browser, client) -> None:
    b, f = chromium, client.facts
    b.open(page.url)
    b.wait_for("document.body.dataset.updated", what="the page's first data")
    assert b.eval("document.getElementById('faults-list').textContent").startswith("none"), "a fault left before"
    shown: dict[str, float] = {}

    def demo(do: tuple[str, ...], undo: tuple[str, ...], expression: str, what: str, picture: str) -> None:
        """Run the demo, time it until the page shows it, take its screenshot, undo it whatever happened."""
        r = cli(*do)
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            shown[" ".join(do)] = shown_within(b, expression, what)
            b.screenshot(OUT / picture)
        finally:
            r = cli(*undo)
            assert r.returncode == 0, r.stdout + r.stderr

    demo(("fault", "kill", "c2"), ("fault", "start", "c2"),
         "document.getElementById('faults-list').textContent.includes('c2: container exited')", "c2 killed",
         "fault-kill-c2.png")
    b.wait_for("document.getElementById('faults-list').textContent.startsWith('none')", timeout=90,
               what="c2 back")
    demo(("nfs", "set", "lag-10"), ("nfs", "set", "off"),
         "document.getElementById('nfs').textContent.startsWith('profile: lag-10')", "the lag-10 profile",
         "nfs-lag-10.png")
    demo(("busy", "start", "--minutes", "1"), ("busy", "stop"),
         f"[...document.querySelectorAll('#queue tbody tr')].some(r => r.children[0].textContent === "
         f"'{f.other_user}')", f"{f.other_user}'s load in the queue", "busy.png")
    (OUT / "demos.json").write_text(json.dumps({"seconds_until_shown": shown, "period_s": 2}, indent=1) + "\n")
    assert b.errors == [], b.errors
