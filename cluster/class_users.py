#!/usr/bin/python3
"""The class's learner accounts on this node, as `minihpc class` lists them
in class.json. Runs as root at every start (the entrypoint) and when the
class changes (minihpc class add/remove, on the controller, every node and
the login node); converges: running it twice changes nothing.

- Each listed learner: the same uid everywhere, a private group of the same
  number (`class` only as a supplementary group, so nothing group-readable is
  open to the class), a home of their own (0700) with `~/course` pointing at
  their course on the shared filesystem, and scratch.
- Each learner leaving (`leaving` in class.json, or an account in the
  learners' range no longer listed): their processes ended, account and home
  removed, key, scratch and files left in /tmp, /var/tmp and /dev/shm gone.
- With --login (the login node, the one that mounts /shared for it): each
  one's public key where sshd looks, `/shared/class/NAME` (0700, theirs) under
  a root-owned `/shared/class` nobody else can create names in, and, for each
  leaving learner not asked to keep their files, their directory and anything
  they own on /shared removed.

Only accounts in the learners' uid range with a learner's name are ever made
or removed: the lab user, the other user and the daemons are never touched,
whatever the file says.
"""

from __future__ import annotations

import fcntl
import grp
import importlib.machinery
import importlib.util
import json
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

CONF = Path("/etc/minihpc/slurm/class.json")
KEYS = Path("/etc/ssh/authorized_keys")
SCRATCH = Path("/scratch")
SHARED = Path("/shared")
LOCAL_TEMP = ("/tmp", "/var/tmp", "/dev/shm")
LOCK = "/run/minihpc-class.lock"
# minihpc/classroom.py writes these; a unit test keeps the two in step.
GROUP, GID = "class", 2000
UIDS = range(2001, 3000)
NAME = re.compile(r"learner[0-9]{2}")
KEY = re.compile(r"ssh-ed25519 [A-Za-z0-9+/=]{60,80}( [A-Za-z0-9@._-]{0,64})?")
# Killed processes linger until reaped, and a fork loop outlives one pass.
END_WITHIN_S = 15


def say(text: str) -> None:
    print(f"class: {text}", file=sys.stderr, flush=True)


def run(*argv: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        sys.exit(f"class: {' '.join(argv)} failed: {(r.stderr or r.stdout).strip()}")


def read() -> tuple[dict[str, tuple[int, str]], dict[str, tuple[int, bool]]]:
    """({name: (uid, public key)} listed, {name: (uid, keep files)} leaving); the file refused whole if any
    entry is not one. No file: no class (every learner account goes, their files kept)."""
    if not CONF.exists():
        return {}, {}
    try:
        doc = json.loads(CONF.read_text())
        want = {}
        for x in doc["learners"]:
            if not (isinstance(x, dict) and isinstance(x.get("name"), str) and NAME.fullmatch(x["name"])
                    and type(x.get("uid")) is int and x["uid"] in UIDS and isinstance(x.get("key"), str)
                    and KEY.fullmatch(x["key"]) and x["name"] not in want):
                raise ValueError(f"not a learner: {str(x)[:200]}")
            want[x["name"]] = (x["uid"], x["key"])
        leaving = {}
        for x in doc.get("leaving", []):
            if not (isinstance(x, dict) and isinstance(x.get("name"), str) and NAME.fullmatch(x["name"])
                    and type(x.get("uid")) is int and x["uid"] in UIDS and type(x.get("keep_files")) is bool
                    and x["name"] not in want):
                raise ValueError(f"not a leaving learner: {str(x)[:200]}")
            leaving[x["name"]] = (x["uid"], x["keep_files"])
    except (ValueError, KeyError, TypeError) as e:
        sys.exit(f"class: {CONF}: {e}")
    return want, leaving


def end_processes(uid: int) -> None:
    """Every process of uid ended (real uid, as userdel counts them), or exit saying which remain.
    kill(-1) as the uid signals all of its processes in one call: a fork loop cannot outrun it."""
    deadline = time.monotonic() + END_WITHIN_S
    while subprocess.run(["pgrep", "-U", str(uid)], capture_output=True, check=False).returncode == 0:
        if time.monotonic() > deadline:
            left = subprocess.run(["pgrep", "-a", "-U", str(uid)], capture_output=True, text=True, check=False)
            sys.exit(f"class: uid {uid}'s processes outlived {END_WITHIN_S} s of SIGKILL: {left.stdout.strip()[:300]}")
        kill_all_as(uid)
        time.sleep(0.2)


def as_uid(uid: int, act) -> None:
    """act() in a child that is the uid and nothing more (no root left to misuse)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            act()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def kill_all_as(uid: int) -> None:
    """SIGKILL to every process of uid, sent as the uid itself: kill(-1) reaches all it may signal
    (its own) under one lock, and spares the sender."""
    as_uid(uid, lambda: os.kill(-1, signal.SIGKILL))


def unmount_own(uid: int) -> None:
    """FUSE mounts the uid made (fusermount3 is setuid) detached: one whose daemon was killed would make
    removing its mount point fail until the node restarts. Detached by fusermount3 run as the uid, so a
    path swapped for a link meanwhile can lead only to a mount that is the uid's own."""
    with open("/proc/self/mounts", "rb") as f:
        mounts = [line.split() for line in f]
    for m in mounts:
        if len(m) > 3 and m[2].startswith(b"fuse") and f"user_id={uid}".encode() in m[3].split(b","):
            path = re.sub(rb"\\([0-7]{3})", lambda o: bytes([int(o[1], 8)]), m[1])  # mounts' octal escapes

            def detach(p: bytes = path) -> None:
                os.execv("/usr/bin/fusermount3", ["fusermount3", "-u", "-z", "--", os.fsdecode(p)])
            as_uid(uid, detach)


def remove_owned(uids: list[int], tops: list[str]) -> None:
    """Whatever the uids own under tops removed: one walk, never following a link, never crossing a mount,
    each removal run from inside its directory (-execdir: a parent swapped for a link meanwhile is not
    followed), entries vanishing meanwhile ignored. Exits if anything of theirs is left."""
    tops = [t for t in tops if os.path.isdir(t)]
    if not tops or not uids:
        return
    owned = ["("] + [a for u in uids for a in ("-uid", str(u), "-o")][:-1] + [")"]
    walk = ["find", *tops, "-xdev", "-ignore_readdir_race", "-mindepth", "1", *owned]
    subprocess.run([*walk, "-prune", "-execdir", "rm", "-rf", "--", "{}", "+"], capture_output=True, check=False)
    left = subprocess.run([*walk, "-print", "-quit"], capture_output=True, text=True, check=False).stdout
    if left:
        sys.exit(f"class: could not remove {left.strip()[:200]!r} (uid {', '.join(map(str, uids))})")


def remove_path(path: Path) -> None:
    """path gone, whatever it is. Only under root's directories (/scratch, /shared/class), where nobody else
    can swap a parent; rm -rf walks without following links and without a depth limit."""
    if path.is_symlink() or path.exists():
        run("rm", "-rf", "--", str(path))


def leave(name: str, uid: int) -> None:
    """This node's part of a learner leaving (their files in temp directories: remove_owned, after)."""
    end_processes(uid)
    unmount_own(uid)
    try:
        pwd.getpwnam(name)
        run("userdel", "--remove", name)
    except KeyError:
        pass
    try:
        grp.getgrnam(name)
        run("groupdel", name)
    except KeyError:
        pass
    (KEYS / name).unlink(missing_ok=True)
    if SCRATCH.is_dir():
        remove_path(SCRATCH / name)


def class_dir() -> int:
    """/shared/class, root's and 0755 (only root makes names in it), as a descriptor; anything else
    found there (a user's directory or link made first) moved aside, never used."""
    top = os.open(SHARED, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for attempt in range(5):
            try:
                st = os.stat(GROUP, dir_fd=top, follow_symlinks=False)
            except FileNotFoundError:
                try:
                    os.mkdir(GROUP, 0o755, dir_fd=top)
                except FileExistsError:
                    continue
            else:
                if not (stat.S_ISDIR(st.st_mode) and st.st_uid == 0):
                    # A name nobody can have made ahead (a user could fill any name they can predict).
                    aside = f"{GROUP}.moved-{int(time.time())}-{os.urandom(6).hex()}"
                    try:
                        os.rename(GROUP, aside, src_dir_fd=top, dst_dir_fd=top)
                    except OSError as e:
                        say(f"could not move aside {SHARED}/{GROUP} (uid {st.st_uid}'s): {e} (attempt {attempt + 1})")
                        continue
                    say(f"moved aside {SHARED}/{GROUP}, made by uid {st.st_uid}, to {SHARED}/{aside}")
                    continue
            try:
                fd = os.open(GROUP, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
            except OSError:
                continue
            if os.fstat(fd).st_uid != 0:
                os.close(fd)
                continue
            os.fchmod(fd, 0o755)
            return fd
        sys.exit(f"class: {SHARED}/{GROUP} keeps changing while it is made")
    finally:
        os.close(top)


def own_dir(parent: int, name: str, uid: int, gid: int) -> int:
    # scratchdir's: made, or whatever else was there replaced, never following a link.
    loader = importlib.machinery.SourceFileLoader("scratchdir", "/usr/local/sbin/minihpc-scratchdir")
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("scratchdir", loader))
    loader.exec_module(module)
    return module.own_dir(parent, name, uid, gid)


def login(want: dict[str, tuple[int, str]], leaving: dict[str, tuple[int, bool]]) -> None:
    for name, (_, key) in want.items():
        path = KEYS / name
        if not path.exists() or path.read_text() != key + "\n":
            path.write_text(key + "\n")
            path.chmod(0o644)
    if not want and not leaving:
        return  # no class: /shared/class is nobody's business yet
    if not os.path.ismount(SHARED):
        sys.exit(f"class: {SHARED} is not mounted: the learners' directories need it")
    fd = class_dir()
    try:
        for name, (uid, _) in want.items():
            os.close(own_dir(fd, name, uid, uid))
    finally:
        os.close(fd)
    going = {name: uid for name, (uid, keep) in leaving.items() if not keep}
    for name in going:
        remove_path(SHARED / GROUP / name)
    remove_owned(list(going.values()), [str(SHARED)])


def main(argv: list[str]) -> int:
    if argv not in ([], ["--login"]):
        print("usage: minihpc-class [--login]", file=sys.stderr)
        return 2
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one change at a time (a start and `minihpc class` may meet)
        want, leaving = read()
        try:
            grp.getgrnam(GROUP)
        except KeyError:
            run("groupadd", "-g", str(GID), GROUP)
        have = {p.pw_name: p.pw_uid for p in pwd.getpwall() if p.pw_uid in UIDS and NAME.fullmatch(p.pw_name)}
        gone = {**{n: uid for n, uid in have.items() if n not in want}, **{n: uid for n, (uid, _) in leaving.items()}}
        for name, uid in sorted(gone.items()):
            leave(name, uid)
            say(f"removed {name}")
        remove_owned(sorted(set(gone.values())), list(LOCAL_TEMP))
        for name, (uid, _) in sorted(want.items()):
            if have.get(name) != uid:
                if name in have:
                    leave(name, have[name])
                try:
                    grp.getgrgid(uid)
                except KeyError:
                    run("groupadd", "-g", str(uid), name)
                run("useradd", "--create-home", "--uid", str(uid), "--gid", str(uid), "--groups", GROUP,
                    "--shell", "/bin/bash", name)
                say(f"made {name} (uid {uid})")
            home = Path(pwd.getpwnam(name).pw_dir)
            os.chmod(home, 0o700)
            try:  # root's link in their home (theirs to remove); a ~/course of their own is left alone
                os.symlink(SHARED / GROUP / name / "course", home / "course")
            except FileExistsError:
                pass
        if argv == ["--login"]:
            login(want, leaving)
        if SCRATCH.is_dir() and os.path.ismount(SCRATCH):
            run("minihpc-scratchdir", "--all")
        say(f"{len(want)} learner(s) on this node")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
