"""One user cannot take the shared filesystem down for the others: a hostile
user (the lab user, uid 1000) floods one node's client while a second user
(uid 1001, "alice") keeps working on it, and root can still switch profiles."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

from nfsmounts import LAB_UID, Mounts

from nfs.localmount import QUIET_USER
from nfs.profiles import named

PY = "/usr/bin/python3"
ALICE = 1001


def run_as(uid: int, code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", PY, "-c",
                             textwrap.dedent(code), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd="/")


def daemon_pid(m: Mounts, node: str) -> int:
    return m.lc.procs[node].pid


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


FLOOD = '''
    import os, subprocess, sys
    d, n = sys.argv[1], int(sys.argv[2])
    os.makedirs(d, exist_ok=True)
    failed = 0
    for i in range(n):
        try:
            os.close(os.open(f"{d}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
        except OSError:
            failed += 1
    found = subprocess.run(["find", d], capture_output=True, text=True).stdout.count("\\n")
    print(failed, found, flush=True)
'''


def test_twenty_thousand_files_and_a_find_leave_the_client_to_everyone(mounts: Mounts):
    (mounts.a / "u").mkdir(mode=0o777)
    (mounts.a / "u").chmod(0o777)
    pid = daemon_pid(mounts, "A")
    alice = run_as(ALICE, QUIET_USER, str(mounts.a / "u/alice"))
    flood = run_as(LAB_UID, FLOOD, str(mounts.a / "u/flood"), "20000")
    peak = 0
    while flood.poll() is None:
        peak = max(peak, open_fds(pid))
        time.sleep(0.1)
    out, err = flood.communicate()
    assert flood.returncode == 0, err
    failed, found = map(int, out.split())
    # alice ran through the whole flood; she stops before the profile switch
    # below, which starts the model afresh (nfs/model.py set_profile: a file
    # she made a moment before would be hidden for delay-3's 3 s, as another
    # node's would: not what this test is about).
    out, err = alice.communicate("stop\n", timeout=30)
    # The kernel holds every one of them; the client holds few descriptors.
    held = mounts.lc.wait_stats("A")
    mounts.set(named("delay-3"))  # root's profile switch still reaches the client
    mounts.set(named("off"))
    assert alice.returncode == 0, err
    lat, errors = out.split("\n")[:2]
    assert failed == 0 and found == 20001, (failed, found)
    assert not errors, f"alice failed while the lab user flooded: {errors}"
    assert len(lat.split()) > 50, "alice hardly ran"
    assert held["nodes"] >= 20000, held
    assert peak < 4096 + 512, f"the daemon held {peak} descriptors for {held['nodes']} inodes"
    for i in range(20):  # root still creates files
        (mounts.a / f"root{i}").write_text("still works\n")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


HOLD_OPEN = '''
    import os, sys
    its = [os.scandir(sys.argv[1]) for _ in range(int(sys.argv[2]))]
    for it in its:
        for _ in range(100):
            next(it)  # a first page of each listing, then hold it open
    print("holding", flush=True)
    sys.stdin.readline()
'''


def test_a_listing_flood_costs_the_client_no_memory(mounts: Mounts):
    """Twenty open listings of a directory of 50,000 names (hard links: cheap
    to make) once took the daemon 45 MiB each."""
    many = mounts.backing / "many"
    many.mkdir(mode=0o755)
    (many / "x").write_text("")
    for i in range(50_000):
        os.link(many / "x", many / f"link-with-a-longish-name-{i:06d}")
    pid = daemon_pid(mounts, "A")
    before = rss_mib(pid)
    holder = run_as(LAB_UID, HOLD_OPEN, str(mounts.a / "many"), "20")
    assert holder.stdout.readline() == "holding\n", holder.stderr.read()  # type: ignore[union-attr]
    held = rss_mib(pid)
    out = subprocess.run(["find", str(mounts.a / "many")], capture_output=True, text=True, check=True).stdout
    assert out.count("\n") == 50_002
    holder.communicate("\n", timeout=30)
    assert held - before < 20, f"the daemon grew from {before:.0f} to {held:.0f} MiB for 20 open listings"


DEEP = '''
    import os, sys
    os.chdir(sys.argv[1])
    name = "d" * 250
    for _ in range(int(sys.argv[2])):
        os.mkdir(name)
        os.chdir(name)  # relative: no path is ever longer than one name
    open("bottom", "w").write("deep\\n")
    print(open("bottom").read(), end="", flush=True)
'''


def test_deep_long_names_cost_the_client_memory_linear_in_depth(mounts: Mounts):
    """1,500 nested 250-byte names: paths of up to 375 kB, 280 MB of labels if
    every node kept its whole path."""
    (mounts.a / "u").mkdir(mode=0o777)
    (mounts.a / "u").chmod(0o777)
    pid = daemon_pid(mounts, "A")
    before = rss_mib(pid)
    deep = run_as(LAB_UID, DEEP, str(mounts.a / "u"), "1500")
    out, err = deep.communicate(timeout=60)
    assert deep.returncode == 0 and out == "deep\n", err
    grown = rss_mib(pid) - before
    assert grown < 40, f"the daemon grew {grown:.0f} MiB for 1,500 nested names"
