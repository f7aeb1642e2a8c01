"""minihpc site check runs its proofs side by side (sitecheck._side_by_side):
at once, each on the site it was given, their checks in the order asked,
and a proof that raised raised once the others have ended."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from minihpc import ROOT, sitecheck
from minihpc.cluster import Cluster
from minihpc.facts import Facts
from minihpc.proofs import Proof


def core(name: str, ok: bool = True) -> Proof:
    c = Proof(name)
    c.check(f"{name} held", ok, "evidence")
    return c


def test_the_proofs_run_at_once_and_their_results_keep_their_names() -> None:
    # Each waits for the other at the barrier: run one after the other, the first would time out.
    barrier = threading.Barrier(2, timeout=10)

    def proof(name: str):
        def run() -> Proof:
            barrier.wait()
            return core(name)
        return run

    out = sitecheck._side_by_side({"a": proof("a"), "b": proof("b")})
    assert {n: [ch.name for ch in c.checks] for n, c in out.items()} == {"a": ["a held"], "b": ["b held"]}


def test_a_proof_that_raises_is_raised_after_the_others_end(capsys: pytest.CaptureFixture[str]) -> None:
    ended = threading.Event()

    def slow() -> Proof:
        ended.wait(0.3)
        ended.set()
        return core("slow")

    def broken() -> Proof:
        raise RuntimeError("the site went away")

    with pytest.raises(RuntimeError, match="the site went away"):
        sitecheck._side_by_side({"broken": broken, "slow": slow})
    assert ended.is_set(), "the other proof ran to its end first"
    assert "broken: stopped after" in capsys.readouterr().err


def test_each_proof_runs_on_the_site_it_was_started_on() -> None:
    """Each proof is handed the site's client (no global cluster, nothing
    of the starter's thread it could lose): in its own thread it runs on
    the site it was given."""
    site = Cluster(Facts(nodes=["n1"], cpus=1, mem_mb=1, scratch_mb=1, shared="/site/work"), None)
    seen = []

    def proof(client: Cluster) -> Proof:
        seen.append(client.facts.shared)
        return core("p")

    sitecheck._side_by_side({"p": lambda: proof(site)})
    assert seen == ["/site/work"]


def test_ctrl_c_reaches_the_check_while_its_proofs_run() -> None:
    """The thread that waits for the proofs acts on Ctrl-C at once (whichever
    thread the signal landed on), so the check can clean up and exit 130."""
    # The handler a terminal's Ctrl-C meets, whatever the suite was started from (a background job ignores SIGINT).
    code = ("import signal, time\nfrom minihpc import sitecheck\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "def slow():\n    time.sleep(60)\n"
            "try:\n    sitecheck._side_by_side({'a': slow, 'b': slow})\n"
            "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n    raise SystemExit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "running a ...\n"
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in out, (out, err)
