"""The newest Snakemake log of each learner, and its end, as JSON: what
`minihpc class status` reads for each one's last error. Sent on standard
input to the login node's python3 and run as root (never in the image, never
on a command line other users can read in /proc).

Learners own everything under /shared/class/NAME, so every step is taken
through directory descriptors opened without following links, only where
Snakemake writes its logs (NAME/course and NAME/labs/*, .snakemake/log), a
bounded number of entries each, and a log is read only if it is a regular
file (a pipe or a device put there is skipped, not waited on). What a
learner cannot be read (their own FUSE mount, a vanishing directory) is
skipped. Output: {name: {"log": path under NAME, "tail": text}} in ASCII.

Usage: python3 - CLASS_DIR NAME...
"""

from __future__ import annotations

import json
import os
import stat
import sys

TAIL_BYTES = 65536
MAX_ENTRIES = 2000  # of a directory looked at: a learner's million files cost them, not the instructor
FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def opendir(parent: int, name: str) -> int | None:
    try:
        return os.open(name, FLAGS | os.O_DIRECTORY, dir_fd=parent)
    except OSError:
        return None


def entries(fd: int) -> list[os.DirEntry]:
    out = []
    try:
        with os.scandir(fd) as it:
            for i, e in enumerate(it):
                if i >= MAX_ENTRIES:
                    break
                out.append(e)
    except OSError:
        pass
    return out


def newest_log(top: int, name: str) -> tuple[float, str, int, str] | None:
    """(mtime, path under name, directory fd, file name) of name's newest *.snakemake.log, or None."""
    home = opendir(top, name)
    if home is None:
        return None
    best = None
    workdirs = [("course", opendir(home, "course"))]
    labs = opendir(home, "labs")
    if labs is not None:
        workdirs += [(f"labs/{e.name}", opendir(labs, e.name)) for e in entries(labs)
                     if e.is_dir(follow_symlinks=False)]
        os.close(labs)
    for rel, wd in workdirs:
        if wd is None:
            continue
        meta = opendir(wd, ".snakemake")
        logs = opendir(meta, "log") if meta is not None else None
        for e in entries(logs) if logs is not None else []:
            if e.name.endswith(".snakemake.log") and e.is_file(follow_symlinks=False):
                t = e.stat(follow_symlinks=False).st_mtime
                if best is None or t > best[0]:
                    if best is not None:
                        os.close(best[2])
                    best = (t, f"{rel}/.snakemake/log/{e.name}", os.dup(logs), e.name)
        for fd in (logs, meta, wd):
            if fd is not None:
                os.close(fd)
    os.close(home)
    return best


def tail(dir_fd: int, name: str) -> str | None:
    try:
        fd = os.open(name, FLAGS | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        os.lseek(fd, max(0, st.st_size - TAIL_BYTES), os.SEEK_SET)
        return os.read(fd, TAIL_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    top = os.open(argv[0], FLAGS | os.O_DIRECTORY)
    found = {}
    for name in argv[1:]:
        best = newest_log(top, name)
        if best is not None:
            text = tail(best[2], best[3])
            os.close(best[2])
            if text is not None:
                found[name] = {"log": best[1], "tail": text}
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
