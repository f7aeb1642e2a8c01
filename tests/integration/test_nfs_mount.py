"""The NFS client through real syscalls: one backing directory mounted twice on
this host, as nodes A and B, each by its own `python -m nfs.client` process."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from nfsmounts import LAB_UID, Mounts, as_lab_user

from nfs.faults import FaultRule
from nfs.profiles import Profile, named


def test_profile_off_shows_a_write_on_a_at_once_on_b(mounts: Mounts):
    (mounts.a / "results").mkdir()
    (mounts.a / "results/out.txt").write_text("hello\n")
    assert (mounts.b / "results/out.txt").read_text() == "hello\n"
    assert (mounts.backing / "results/out.txt").read_text() == "hello\n"
    assert [p.name for p in (mounts.b / "results").glob("*.txt")] == ["out.txt"], "globbing needs real inodes"
    r = subprocess.run(["bash", "-c", f"cd {mounts.b} && echo results/*.txt"], capture_output=True, text=True)
    assert r.stdout.split() == ["results/out.txt"], r.stdout
    (mounts.b / "results/out.txt").unlink()
    assert not (mounts.a / "results/out.txt").exists()


def test_deterministic_delay_hides_the_other_nodes_file_for_d_seconds(mounts: Mounts):
    mounts.set(named("delay-3").with_options(delay=2))
    (mounts.a / "out.txt").write_text("x")
    t0 = time.monotonic()
    assert (mounts.a / "out.txt").exists(), "a node sees its own writes at once"
    assert not (mounts.b / "out.txt").exists()
    assert "out.txt" not in os.listdir(mounts.b)
    while not (mounts.b / "out.txt").exists():
        assert time.monotonic() - t0 < 5, "never appeared on B"
        time.sleep(0.05)
    waited = time.monotonic() - t0
    assert 1.7 <= waited <= 2.6, f"visible on B after {waited:.2f}s, expected about 2 s"
    assert (mounts.b / "out.txt").read_text() == "x"


def test_negative_lookup_entry_lasts_until_the_directory_revalidates(mounts: Mounts):
    mounts.set(named("linux").with_options(acregmin=1, acregmax=1, acdirmin=2, acdirmax=2, rtt_ms=0,
                                           jitter_ms=0))
    (mounts.a / "d").mkdir()
    time.sleep(2.1)
    assert not (mounts.b / "d/late.txt").exists()  # B caches the negative entry
    t0 = time.monotonic()
    (mounts.a / "d/late.txt").write_text("now")
    assert not (mounts.b / "d/late.txt").exists(), "the negative entry still answers"
    while not (mounts.b / "d/late.txt").exists():
        assert time.monotonic() - t0 < 4
        time.sleep(0.05)
    assert mounts.stats("B").get("cache.negative", 0) >= 1


def test_touch_sets_now_and_leaves_an_omitted_time_alone(mounts: Mounts):
    f = mounts.a / "stamp.txt"
    f.write_text("x")
    os.utime(f, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    before = time.time()
    # `touch` and Snakemake's own touch of outputs: utimensat(NULL), "now" for both times.
    subprocess.run(["touch", str(f)], check=True)
    s = (mounts.b / "stamp.txt").stat()
    assert before - 1 <= s.st_mtime <= time.time() + 1 and before - 1 <= s.st_atime <= time.time() + 1, s
    # touch -m sets mtime only: atime is "omit" and must keep its value.
    os.utime(f, ns=(1_500_000_000 * 10**9, 1_500_000_000 * 10**9))
    subprocess.run(["touch", "-m", "-d", "@1700000000", str(f)], check=True)
    s = (mounts.backing / "stamp.txt").stat()
    assert (s.st_atime, s.st_mtime) == (1_500_000_000, 1_700_000_000)


def test_files_belong_to_the_user_who_made_them_on_every_node(mounts: Mounts):
    r = as_lab_user(f"mkdir {mounts.a}/mine && echo x > {mounts.a}/mine/f")
    assert r.returncode == 0, r.stderr
    for view in (mounts.a, mounts.b, mounts.backing):
        s = (view / "mine/f").stat()
        assert (s.st_uid, s.st_gid) == (LAB_UID, LAB_UID), view
    (mounts.a / "rootfile").write_text("root's")
    (mounts.a / "rootfile").chmod(0o644)
    r = as_lab_user(f"echo x >> {mounts.b}/rootfile")
    assert r.returncode != 0 and "Permission denied" in r.stderr, "default_permissions must apply the owner's mode"


def test_injected_faults_reach_the_caller_as_errnos(mounts: Mounts):
    (mounts.a / "data.txt").write_text("payload")
    mounts.set(Profile("faulty", acregmin=0, acregmax=0, acdirmin=0, acdirmax=0, lookupcache="none", faults=(
        # The kernel retries a failed readahead with a plain read: one read() can be two READs.
        FaultRule("EIO", op="read", path="/data.txt", node="B", count=2),
        FaultRule("ENOSPC", op="write", path="/full/*", count=1),
        # The VFS retries a lookup that says ESTALE once: the rule must fire every time.
        FaultRule("ESTALE", op="getattr", path="/stale", probability=1.0),
    )))
    assert (mounts.a / "data.txt").read_text() == "payload", "the rule names node B only"
    with pytest.raises(OSError) as e:
        (mounts.b / "data.txt").read_text()
    assert e.value.errno == errno.EIO
    assert (mounts.b / "data.txt").read_text() == "payload", "count=2: later reads succeed"
    (mounts.a / "full").mkdir()
    with pytest.raises(OSError) as e:
        with open(mounts.a / "full/x", "w") as f:
            f.write("data")
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as e:
        os.stat(mounts.b / "stale")
    assert e.value.errno == errno.ESTALE


def test_round_trips_are_charged_only_when_going_to_the_server(mounts: Mounts):
    (mounts.a / "f").write_text("x")
    mounts.set(named("linux").with_options(rtt_ms=20, jitter_ms=0, acregmin=30, acregmax=60))
    os.stat(mounts.b / "f")  # fills B's attribute cache
    t = time.monotonic()
    for _ in range(20):
        os.stat(mounts.b / "f")
    cached = time.monotonic() - t
    mounts.set(named("rtt-5ms").with_options(rtt_ms=20))
    t = time.monotonic()
    for _ in range(5):
        os.stat(mounts.b / "f")
    uncached = time.monotonic() - t
    assert cached < 0.2, f"20 cached stats took {cached:.3f}s"
    assert uncached >= 5 * 0.020, f"5 uncached stats took {uncached:.3f}s, each must pay a 20 ms round trip"


def eventually(check: Callable[[], bool], what: str, within: float = 1.0) -> None:
    """Invalidations reach the other node's kernel asynchronously (inotify, then
    a notification): within milliseconds, not before the writer's call returns."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.01)


def test_profile_off_keeps_kernel_caches_coherent_with_the_other_node(mounts: Mounts):
    """Under `off` the kernel caches entries, attributes and pages (for 300 s);
    inotify on the backing store must invalidate whatever another node changes."""
    f_a, f_b = mounts.a / "data.txt", mounts.b / "data.txt"
    f_a.write_text("first\n")
    assert f_b.read_text() == "first\n" and f_b.stat().st_size == 6  # B now caches entry, size, pages
    f_a.write_text("second, longer\n")
    eventually(lambda: f_b.stat().st_size == 15 and f_b.read_text() == "second, longer\n", "a longer rewrite")
    with open(f_a, "r+") as f:  # same size, new bytes: only the pages are stale
        f.write("SECOND")
    eventually(lambda: f_b.read_text() == "SECOND, longer\n", "an overwrite in place")
    f_a.unlink()
    eventually(lambda: not f_b.exists(), "a deletion")
    (mounts.a / "again.txt").write_text("A's\n")
    assert (mounts.b / "again.txt").read_text() == "A's\n"  # cached by B
    (mounts.a / "again.txt").unlink()
    # At once, before B's kernel may have heard: O_CREAT of a name it still
    # holds must create the file (the stale open is retried as over NFS).
    (mounts.b / "again.txt").write_text("recreated on B\n")
    assert (mounts.a / "again.txt").read_text() == "recreated on B\n"
    (mounts.a / "d/sub").mkdir(parents=True)
    assert (mounts.b / "d/sub").is_dir()
    shutil.rmtree(mounts.a / "d")
    eventually(lambda: not (mounts.b / "d").exists(), "a removed tree")
    (mounts.b / "d/sub").mkdir(parents=True)  # mkdir -p over names B had cached
    (mounts.a / "new.txt").write_text("new")
    assert (mounts.b / "new.txt").read_text() == "new"
    os.rename(mounts.a / "new.txt", mounts.a / "moved.txt")
    eventually(lambda: not (mounts.b / "new.txt").exists(), "a rename's old name")
    assert (mounts.b / "moved.txt").read_text() == "new"
    (mounts.b / "moved.txt").chmod(0o600)
    eventually(lambda: (mounts.a / "moved.txt").stat().st_mode & 0o777 == 0o600, "a chmod")


def test_leaving_off_drops_what_the_kernel_cached(mounts: Mounts):
    f = mounts.b / "f"
    (mounts.a / "f").write_text("x")
    os.stat(f)  # cached by B's kernel under `off`
    mounts.set(named("rtt-5ms").with_options(rtt_ms=1))
    before = mounts.lc.wait_stats("B").get("rpcs", 0)
    for _ in range(3):
        os.stat(f)
    assert mounts.lc.wait_stats("B").get("rpcs", 0) - before >= 3, "each stat must reach the model now"


def test_round_trips_of_different_callers_overlap(mounts: Mounts):
    """Latency delays each reply, not the client: like an NFS client with many
    calls in flight, four callers waiting at once wait about one round trip."""
    for i in range(4):
        (mounts.a / f"f{i}").write_text("x")
    # One stat alone is a few round trips (lookup, getattr); four serialized would be four times
    # that. A round trip of 0.5 s leaves a loaded host's noise (CI's smokes beside: up to 0.9 s on
    # one stat) well inside the gap between overlapped (about 5 trips here) and serialized (12).
    rtt = 0.5
    mounts.set(named("rtt-5ms").with_options(rtt_ms=int(rtt * 1000)))
    t = time.monotonic()
    os.stat(mounts.b / "f0")
    alone = time.monotonic() - t
    with ThreadPoolExecutor(4) as pool:
        t = time.monotonic()
        list(pool.map(os.stat, [mounts.b / f"f{i}" for i in range(4)]))
        together = time.monotonic() - t
    assert alone >= rtt, f"one stat took {alone:.3f}s: it must pay the {rtt}-s round trip"
    serialized = 4 * max(1, round(alone / rtt)) * rtt
    assert together < 0.6 * serialized, (f"4 concurrent stats took {together:.2f}s, one alone {alone:.2f}s: "
                                         f"serialized (which takes {serialized:.1f}s), not overlapped")
