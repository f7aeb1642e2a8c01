"""Run on a node (as root, the script on standard input) to see or empty its
scratch: `python3 - show MOUNT [DIR]` prints one JSON object (size, used and free
MiB of the scratch filesystem, and the regular files under DIR, default the
whole scratch); `python3 - clean MOUNT` empties it, as a site's epilog would
(each user's own directory stays, emptied).

It needs only the node's python3, so the same inspection works on a real
site's node as on minihpc's. It keeps to the standard library on purpose.
"""

import json
import os
import pwd
import shutil
import stat
import sys


def show(mount: str, top: str) -> dict:
    st = os.statvfs(mount)
    mib = st.f_frsize / (1024 * 1024)
    files = [top] if os.path.isfile(top) and not os.path.islink(top) else []
    for d, _, names in os.walk(top):
        files += [os.path.join(d, n) for n in names if os.path.isfile(os.path.join(d, n))
                  and not os.path.islink(os.path.join(d, n))]
    return {"mount": mount, "size_mb": round(st.f_blocks * mib), "used_mb": round((st.f_blocks - st.f_bfree) * mib),
            "free_mb": round(st.f_bavail * mib), "files": sorted(files)}


def clean(mount: str) -> dict:
    """Empty scratch; each user's own directory (root made it, the user
    cannot make it again) stays, emptied."""
    failed = []
    for name in os.listdir(mount):
        path = os.path.join(mount, name)
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and _users_own(name, st.st_uid):
                for inner in os.listdir(path):
                    _remove(os.path.join(path, inner))
            else:
                _remove(path)
        except OSError as e:
            failed.append(f"{path}: {e.strerror}")
    return {"mount": mount, "failed": failed}


def _users_own(name: str, uid: int) -> bool:
    try:
        return pwd.getpwnam(name).pw_uid == uid
    except KeyError:
        return False


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def fail(mount: str, error: str, code: int) -> int:
    print(json.dumps({"mount": mount, "error": error}))
    return code


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("show", "clean"):
        return fail("", "usage: inspect.py show MOUNT [DIR] | clean MOUNT", 2)
    verb, mount, rest = argv[0], argv[1], argv[2:]
    if not os.path.ismount(mount):
        return fail(mount, f"{mount} is not a mount on this node", 1)
    if verb == "clean":
        out = clean(mount)
        print(json.dumps(out))
        return 1 if out["failed"] else 0
    top = os.path.realpath(rest[0]) if rest else mount
    if os.path.commonpath([top, mount]) != mount:
        return fail(mount, f"{rest[0]} is not under {mount}", 2)
    print(json.dumps(show(mount, top)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
