"""What NFS promises its users, through two mounts (nodes A and B) of one
backing directory: locks shared by every node, only the caller's umask,
hard links coherent by inode, and revoked permissions within the window the
profile documents."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time

import pytest
from nfsmounts import LAB_UID, Mounts, as_lab_user

from nfs.ctl import build
from nfs.profiles import named

PY = "/usr/bin/python3"  # the lab user's interpreter (this venv may be private)


def lab_python(code: str, *args: str, cwd: str | os.PathLike = "/") -> subprocess.Popen:
    """`code` run by the lab user's python as a separate process (in `cwd`)."""
    return subprocess.Popen(["setpriv", f"--reuid={LAB_UID}", f"--regid={LAB_UID}", "--clear-groups", PY, "-c",
                             textwrap.dedent(code), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd)


def finish_with(proc: subprocess.Popen, stdin: str, timeout: float = 60) -> str:
    out, err = proc.communicate(stdin, timeout=timeout)
    assert proc.returncode == 0, err
    return out


def finish(*procs: subprocess.Popen, timeout: float = 60) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        outs.append(out)
    return outs


# -- locks --------------------------------------------------------------------

INCREMENT = '''
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)  # held open throughout, as a database does
    for _ in range(int(sys.argv[2])):
        fcntl.lockf(fd, fcntl.LOCK_EX)
        n = int(os.pread(fd, 32, 0) or b"0")
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d" % (n + 1), 0)
        fcntl.lockf(fd, fcntl.LOCK_UN)
    os.close(fd)
'''


@pytest.mark.parametrize("profile", ["off", "linux"])
def test_locked_increments_from_two_nodes_add_up(mounts: Mounts, profile: str):
    """Under `linux` the attributes stay cached for seconds: only taking the
    lock makes a node read what the other wrote under it, as over NFS."""
    mounts.set(named(profile).with_options(rtt_ms=0, jitter_ms=0) if profile == "linux" else named(profile))
    r = as_lab_user(f"echo 0 > {mounts.a}/counter")
    assert r.returncode == 0, r.stderr
    t = time.monotonic()
    finish(lab_python(INCREMENT, str(mounts.a / "counter"), "300"),
           lab_python(INCREMENT, str(mounts.b / "counter"), "300"))
    took = time.monotonic() - t
    assert (mounts.backing / "counter").read_text() == "600", f"lost updates under a shared lock ({took:.1f}s)"
    assert (mounts.a / "counter").read_text() == "600" == (mounts.b / "counter").read_text()


HOLD = '''
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    getattr(fcntl, sys.argv[2])(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.readline()  # until told
    os.close(fd)          # closing drops the lock
    print("closed", flush=True)
    sys.stdin.readline()
'''

TRY = '''
    import errno, fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR)
    lock = getattr(fcntl, sys.argv[2])
    try:
        lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("got it", flush=True)
    except OSError as e:
        print(errno.errorcode[e.errno], flush=True)
    if sys.argv[2] == "lockf":  # who holds it, as fcntl(F_GETLK) says
        import struct
        out = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
        print("getlk", struct.unpack("hhqqi4x", out)[0] == fcntl.F_WRLCK, flush=True)
    sys.stdin.readline()
    t = time.monotonic()
    lock(fd, fcntl.LOCK_EX)  # waits for the other node
    print("waited", round(time.monotonic() - t, 2), flush=True)
'''


def test_an_exclusive_lock_on_one_node_excludes_the_other(mounts: Mounts):
    for kind in ("flock", "lockf"):
        path = f"{kind}.lock"
        (mounts.a / path).write_text("")
        (mounts.a / path).chmod(0o666)
        holder = lab_python(HOLD, str(mounts.a / path), kind)
        assert holder.stdout.readline() == "held\n"  # type: ignore[union-attr]
        other = lab_python(TRY, str(mounts.b / path), kind)
        assert other.stdout.readline() == "EAGAIN\n", f"{kind}: node B got the lock node A holds"  # type: ignore[union-attr]
        if kind == "lockf":
            assert other.stdout.readline() == "getlk True\n"  # type: ignore[union-attr]
        other.stdin.write("go\n")  # type: ignore[union-attr]
        other.stdin.flush()  # type: ignore[union-attr]
        time.sleep(0.5)
        assert other.poll() is None, f"{kind}: a blocking lock on B did not wait for A's"
        holder.stdin.write("close\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        out = finish(other)[0]
        waited = float(out.split()[-1])
        assert 0.4 <= waited < 5, f"{kind}: B waited {waited}s, A held it about 0.5 s"
        assert holder.stdout.readline() == "closed\n"  # type: ignore[union-attr]
        finish(holder)


HOLD_THEN_CLOSE_ANOTHER = '''
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.readline()
    os.close(os.open(sys.argv[1], os.O_RDONLY))  # another descriptor of the file: POSIX drops the lock
    print("closed another", flush=True)
    sys.stdin.readline()
'''


def test_a_posix_lock_outlives_other_owners_closes_and_goes_with_any_close_of_its_own(mounts: Mounts):
    """A close is a FLUSH for the client. Another process's open and close of
    the file leaves the lock held (the reading thread answers that FLUSH
    itself: its owner holds nothing); the holder's close of any descriptor
    of the file drops it, as POSIX says, and the other node gets it."""
    path = mounts.a / "posix.lock"
    path.write_text("")
    path.chmod(0o666)
    holder = lab_python(HOLD_THEN_CLOSE_ANOTHER, str(path))
    assert holder.stdout.readline() == "held\n"  # type: ignore[union-attr]
    finish(lab_python("import os, sys\nfor _ in range(50): os.close(os.open(sys.argv[1], os.O_RDWR))", str(path)))
    other = lab_python(TRY, str(mounts.b / "posix.lock"), "lockf")
    assert other.stdout.readline() == "EAGAIN\n", "another owner's closes dropped the lock"  # type: ignore[union-attr]
    assert other.stdout.readline() == "getlk True\n"  # type: ignore[union-attr]
    holder.stdin.write("close\n")  # type: ignore[union-attr]
    holder.stdin.flush()  # type: ignore[union-attr]
    assert holder.stdout.readline() == "closed another\n"  # type: ignore[union-attr]
    other.stdin.write("go\n")  # type: ignore[union-attr]
    other.stdin.flush()  # type: ignore[union-attr]
    waited = float(finish(other)[0].split()[-1])
    assert waited < 2, f"B waited {waited}s for a lock its holder's close had dropped"
    holder.stdin.write("end\n")  # type: ignore[union-attr]
    holder.stdin.flush()  # type: ignore[union-attr]
    finish(holder)


def test_a_waiting_lock_gives_way_to_a_signal(mounts: Mounts):
    (mounts.a / "sig.lock").write_text("")
    (mounts.a / "sig.lock").chmod(0o666)
    holder = lab_python(HOLD, str(mounts.a / "sig.lock"), "lockf")
    assert holder.stdout.readline() == "held\n"  # type: ignore[union-attr]
    waiter = lab_python('''
        import fcntl, os, signal, sys, time
        def alarm(*_): raise TimeoutError
        signal.signal(signal.SIGALRM, alarm)
        fd = os.open(sys.argv[1], os.O_RDWR)
        signal.alarm(1)
        t = time.monotonic()
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            print("locked")
        except TimeoutError:
            print("interrupted", round(time.monotonic() - t, 1))
    ''', str(mounts.b / "sig.lock"))
    out = finish(waiter, timeout=10)[0]
    assert out.startswith("interrupted"), out
    holder.stdin.write("\n\n")  # type: ignore[union-attr]
    finish(holder)
    assert mounts.stats("A") and mounts.stats("B")


SQLITE = '''
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], timeout=60)
    for i in range(int(sys.argv[3])):
        with db:
            db.execute("INSERT INTO t (node, i) VALUES (?, ?)", (sys.argv[2], i))
    db.close()
'''


def test_sqlite_on_both_nodes_keeps_every_row(mounts: Mounts):
    r = as_lab_user(f"{PY} -c \"import sqlite3; sqlite3.connect('{mounts.a}/db.sqlite')"
                    ".execute('CREATE TABLE t (node TEXT, i INTEGER)')\"")
    assert r.returncode == 0, r.stderr
    finish(lab_python(SQLITE, str(mounts.a / "db.sqlite"), "A", "150"),
           lab_python(SQLITE, str(mounts.b / "db.sqlite"), "B", "150"), timeout=120)
    r = as_lab_user(f"{PY} -c \"import sqlite3; db = sqlite3.connect('{mounts.b}/db.sqlite'); "
                    "print(db.execute('PRAGMA integrity_check').fetchone()[0], "
                    "db.execute('SELECT node, count(DISTINCT i) FROM t GROUP BY node ORDER BY node').fetchall())\"")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok [('A', 150), ('B', 150)]", r.stdout


# -- umask --------------------------------------------------------------------

@pytest.mark.parametrize("umask, file_mode, dir_mode", [("002", 0o664, 0o775), ("077", 0o600, 0o700),
                                                         ("000", 0o666, 0o777)])
def test_only_the_callers_umask_applies(mounts: Mounts, umask: str, file_mode: int, dir_mode: int):
    r = as_lab_user(f"umask {umask} && echo x > {mounts.a}/f && mkdir {mounts.a}/d && "
                    f"{PY} -c \"import os; os.close(os.open('{mounts.a}/g', os.O_CREAT | os.O_WRONLY, 0o666))\"")
    assert r.returncode == 0, r.stderr
    for view in (mounts.backing, mounts.b):
        assert (view / "f").stat().st_mode & 0o7777 == file_mode, oct((view / "f").stat().st_mode)
        assert (view / "g").stat().st_mode & 0o7777 == file_mode, oct((view / "g").stat().st_mode)
        assert (view / "d").stat().st_mode & 0o7777 == dir_mode, oct((view / "d").stat().st_mode)


# -- hard links: one file, however named --------------------------------------

def eventually(check, what: str, within: float = 1.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.01)


def test_a_write_through_one_name_is_seen_through_the_others(mounts: Mounts):
    (mounts.a / "d1").mkdir()
    (mounts.backing / "d2").mkdir(mode=0o777)  # a directory node A never looks at
    f = mounts.a / "d1/f"
    f.write_text("first\n")
    # Other names, made on the server: one in the same directory, one in d2.
    os.link(mounts.backing / "d1/f", mounts.backing / "d1/same")
    os.link(mounts.backing / "d1/f", mounts.backing / "d2/far")
    assert f.read_text() == "first\n" and f.stat().st_nlink == 3  # A's kernel caches pages and attributes
    (mounts.b / "d1/same").write_text("second, longer\n")
    eventually(lambda: f.read_text() == "second, longer\n", "a rewrite through a name A never looked up")
    with open(mounts.b / "d1/same", "r+") as w:  # same size, new bytes: only the pages are stale
        w.write("SECOND")
    eventually(lambda: f.read_text() == "SECOND, longer\n", "an overwrite in place")
    with open(mounts.b / "d2/far", "r+") as w:
        w.write("THIRD!")
    eventually(lambda: f.read_text() == "THIRD!, longer\n", "a write through a name in an unwatched directory")
    with open(f, "a") as w:  # A's edit keeps B's
        w.write("A's line\n")
    assert (mounts.b / "d2/far").read_text() == "THIRD!, longer\nA's line\n"
    # Close-to-open: an open after another node's write sees it, whatever inotify has said so far.
    for i in range(20):
        (mounts.b / "d2/far").write_text(f"round {i}\n")
        assert f.read_text() == f"round {i}\n"


# -- revoked permissions --------------------------------------------------------

def revoked_after(mounts: Mounts, profile, limit: float) -> float:
    """Seconds until a chmod 700 on node B denies the lab user on node A a
    file it was reading in that directory (polling every 0.1 s)."""
    mounts.set(profile)
    (mounts.a / "private").mkdir(mode=0o755)
    (mounts.a / "private/data").write_text("secret\n")
    (mounts.a / "private/data").chmod(0o644)
    reader = lab_python('''
        import sys, time
        t0 = None
        while True:
            try:
                with open(sys.argv[1]) as f:
                    f.read()
            except PermissionError:
                print(round(time.monotonic() - t0, 2), flush=True)
                break
            if t0 is None:
                print("reading", flush=True)
                sys.stdin.readline()  # until the chmod is done
                t0 = time.monotonic()
            time.sleep(0.1)
    ''', str(mounts.a / "private/data"))
    assert reader.stdout.readline() == "reading\n", reader.stderr.read()  # type: ignore[union-attr]
    (mounts.b / "private").chmod(0o700)
    reader.stdin.write("go\n")  # type: ignore[union-attr]
    reader.stdin.flush()  # type: ignore[union-attr]
    return float(finish(reader, timeout=limit)[0])


@pytest.mark.parametrize("acdirmax", [0, 2])
def test_a_revoked_permission_applies_on_the_other_node_within_acdirmax(mounts: Mounts, acdirmax: float):
    """The window `linux` documents: a directory's cached attributes, which
    carry its permissions, live at most acdirmax; cached file attributes
    (acregmax, here much longer) and handles must not extend it."""
    profile = named("linux").with_options(rtt_ms=0, jitter_ms=0, acregmin=30, acregmax=60, acdirmin=acdirmax,
                                          acdirmax=acdirmax)
    took = revoked_after(mounts, profile, limit=30)
    assert took <= acdirmax + 0.5, f"still readable {took}s after chmod 700, acdirmax={acdirmax}"


def test_the_linux_profile_documents_its_revocation_window():
    p = named("linux")
    assert f"acdirmax={p.acdirmax:g}" in p.description and "permission" in p.description, p.description


# -- a working directory through a profile switch ------------------------------

def test_a_process_keeps_its_working_directory_when_a_fault_is_set(mounts: Mounts):
    """Setting a fault (or any profile the kernel may not cache under) makes
    the client drop what the kernel cached; a job working in a directory on
    the mount must keep it: its getcwd() failed with ENOENT for good (srun:
    `getcwd failed`) once the directory's entry was dropped."""
    r = as_lab_user(f"mkdir -p {mounts.b}/work && echo hi > {mounts.b}/work/f")
    assert r.returncode == 0, r.stderr
    job = lab_python('''
        import os, sys
        print("in", os.getcwd(), flush=True)
        sys.stdin.readline()  # until the fault is set
        try:
            print("still in", os.getcwd(), open("f").read().strip(), flush=True)
        except OSError as e:
            print("lost it:", e, flush=True)
    ''', cwd=mounts.a / "work")
    assert job.stdout.readline().startswith("in "), job.stderr.read()  # type: ignore[union-attr]
    mounts.set(build("off", [], ["EIO:op=write,path=/nowhere/*,count=1"]))
    time.sleep(1.5)  # the switch and its invalidations land
    out = finish_with(job, "go\n")
    assert out.startswith("still in ") and out.rstrip().endswith(" hi"), out
