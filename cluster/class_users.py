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
import shutil
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
    """Every process of uid ended (real uid, as userdel counts them), or exit saying which remain."""
    deadline = time.monotonic() + END_WITHIN_S
    while subprocess.run(["pgrep", "-U", str(uid)], capture_output=True, check=False).returncode == 0:
        if time.monotonic() > deadline:
            left = subprocess.run(["pgrep", "-a", "-U", str(uid)], capture_output=True, text=True, check=False)
            sys.exit(f"class: uid {uid}'s processes outlived {END_WITHIN_S} s of SIGKILL: {left.stdout.strip()[:300]}")
        subprocess.run(["pkill", "-KILL", "-U", str(uid)], check=False)
        time.sleep(0.2)


def remove_owned(uid: int, tops: list[str]) -> None:
    """Whatever uid owns under tops (never following a link, never crossing a mount), removed."""
    tops = [t for t in tops if os.path.isdir(t)]
    if tops:
        run("find", *tops, "-xdev", "-mindepth", "1", "-uid", str(uid), "-prune", "-exec", "rm", "-rf", "--", "{}",
            "+")


def remove_entry(parent: int, name: str) -> None:
    """name under the directory descriptor parent gone, whatever it is (links removed, never followed)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=parent)  # fd-based: a link planted inside is removed, not followed
    else:
        os.unlink(name, dir_fd=parent)


def leave(name: str, uid: int) -> None:
    """This node's part of a learner leaving."""
    end_processes(uid)
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
        top = os.open(SCRATCH, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            remove_entry(top, name)
        finally:
            os.close(top)
    remove_owned(uid, list(LOCAL_TEMP))


def class_dir() -> int:
    """/shared/class, root's and 0755 (only root makes names in it), as a descriptor; anything else
    found there (a user's directory or link made first) moved aside, never used."""
    top = os.open(SHARED, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for _ in range(3):
            try:
                st = os.stat(GROUP, dir_fd=top, follow_symlinks=False)
            except FileNotFoundError:
                try:
                    os.mkdir(GROUP, 0o755, dir_fd=top)
                except FileExistsError:
                    continue
            else:
                if not (stat.S_ISDIR(st.st_mode) and st.st_uid == 0):
                    aside = f"{GROUP}.moved-{int(time.time())}"
                    os.rename(GROUP, aside, src_dir_fd=top, dst_dir_fd=top)
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
    if not os.path.ismount(SHARED):
        sys.exit(f"class: {SHARED} is not mounted: the learners' directories need it")
    fd = class_dir()
    try:
        for name, (uid, _) in want.items():
            os.close(own_dir(fd, name, uid, uid))
        for name, (uid, keep) in leaving.items():
            if not keep:
                remove_entry(fd, name)
                remove_owned(uid, [str(SHARED)])
    finally:
        os.close(fd)


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
            course = home / "course"
            if not course.is_symlink() and not course.exists():  # a learner's own ~/course is theirs
                os.symlink(SHARED / GROUP / name / "course", course)
                os.lchown(course, uid, uid)
        if argv == ["--login"]:
            login(want, leaving)
        if SCRATCH.is_dir() and os.path.ismount(SCRATCH):
            run("minihpc-scratchdir", "--all")
        say(f"{len(want)} learner(s) on this node")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
