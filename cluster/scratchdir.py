#!/usr/bin/python3
"""Each user's and each job's directory on node scratch, made by root.

/scratch itself is root's and closed to users (scratch/policy.py): nobody can
make another user's directory first and so receive their staged files.
`minihpc-scratchdir --all` (the entrypoint, at every start) makes
/scratch/<user>, 0700 and the user's own, for every user; slurmd's Prolog
runs it (no arguments, SLURM_SCRIPT_CONTEXT=prolog_slurmd) for the job's user and makes
/scratch/<user>/job-<id>, the prefix profiles/slurm-staging stages under.

Runs as root inside directories a user owns: never follows a link (each
directory is opened with O_NOFOLLOW and changed through its descriptor), so a
link a user planted cannot turn a chown into one of a system file.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import sys

# What the topology declares (scratch/policy.py, rendered into scratch.env).
SCRATCH_ENV = "/etc/minihpc/slurm/scratch.env"
USERS = range(1000, 60000)  # useradd's range for people
NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def say(text: str) -> None:
    # A Prolog's output is discarded: the node's log keeps it (minihpc logs NODE).
    try:
        with open("/proc/1/fd/2", "w") as log:
            log.write(f"scratchdir: {text}\n")
    except OSError:
        print(f"scratchdir: {text}", file=sys.stderr)


def own_dir(parent: int, name: str, uid: int, gid: int) -> int:
    """`name` under the directory `parent` as a directory of uid's, 0700, not
    a link: made, or whatever else was there replaced; its descriptor."""
    for _ in range(3):
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                continue
        else:
            if not stat.S_ISDIR(st.st_mode):
                say(f"replaced a {stat.filemode(st.st_mode)[0]!r} entry at {name} (owner uid {st.st_uid})")
                os.unlink(name, dir_fd=parent)
                continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError, OSError):
            continue  # changed under us (only the directory's owner can): look again
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o700)
        return fd
    raise OSError(f"{name} keeps changing while it is made")


def mount() -> str:
    with open(SCRATCH_ENV) as f:
        return dict(line.strip().split("=", 1) for line in f if "=" in line)["SCRATCH"]


def user_dir(user: pwd.struct_passwd) -> int:
    top = os.open(mount(), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return own_dir(top, user.pw_name, user.pw_uid, user.pw_gid)
    finally:
        os.close(top)


def all_users() -> int:
    for user in pwd.getpwall():
        if user.pw_uid in USERS and NAME.fullmatch(user.pw_name):
            os.close(user_dir(user))
    return 0


def prolog() -> int:
    name, job = os.environ.get("SLURM_JOB_USER", ""), os.environ.get("SLURM_JOB_ID", "")
    if not NAME.fullmatch(name) or not job.isdigit():
        say(f"prolog without a plain user and job id (SLURM_JOB_USER={name!r}, SLURM_JOB_ID={job!r})")
        return 0
    try:
        user = pwd.getpwnam(name)
        fd = user_dir(user)
        try:
            os.close(own_dir(fd, f"job-{job}", user.pw_uid, user.pw_gid))
        finally:
            os.close(fd)
    except (KeyError, OSError) as e:
        # Not the node's fault (a user racing their own directory): the job
        # runs and its staging says why; a failed Prolog would drain the node.
        say(f"job {job} of {name}: no scratch directory: {e}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--all"]:
        sys.exit(all_users())
    if sys.argv[1:] == [] and os.environ.get("SLURM_SCRIPT_CONTEXT") == "prolog_slurmd":
        sys.exit(prolog())
    print("usage: minihpc-scratchdir --all (or as slurmd's Prolog)", file=sys.stderr)
    sys.exit(2)
