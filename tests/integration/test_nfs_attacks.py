"""Attacks on the NFS client by an unprivileged user (uid 1000), against the
client mounted twice on this host as the cluster mounts it: a root daemon,
allow_other, default_permissions, the backing store under a 0700 directory.

Every test plants root-owned decoys outside the share (a 0600 secret, a 0644
file, an executable, a directory of root files, and the clients' own control
file) and asserts afterwards that none of them changed, and that the user's
operation did what a local filesystem would have done.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nfsmounts import LAB_UID, Mounts, as_lab_user

from nfs.profiles import Profile, named

ROOT = Path(__file__).resolve().parents[2]
OTHER_GID = 1001  # a group the lab user is not in (unless given it)


@dataclass
class Site:
    m: Mounts
    decoy: Path
    before: dict[str, tuple] | None = None

    def set(self, profile: Profile) -> None:
        """Switch the profile as root (the control file changes legitimately)."""
        self.m.set(profile)
        assert self.before is not None
        self.before[str(self.m.lc.control)] = self.snapshot()[str(self.m.lc.control)]

    def snapshot(self) -> dict[str, tuple]:
        """Everything about the decoys and the control file that an attack could change."""
        out: dict[str, tuple] = {}
        for path in [self.decoy, *sorted(self.decoy.rglob("*")), self.m.lc.control]:
            s = path.lstat()
            data = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            out[str(path)] = (s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_mtime_ns, data)
        return out

    def user(self, script: str, groups: tuple[int, ...] = (), **env: str) -> subprocess.CompletedProcess:
        """`script` as the lab user, with $A, $B (the mounts) and $DECOY set."""
        return as_lab_user(script, env={"A": str(self.m.a), "B": str(self.m.b), "DECOY": str(self.decoy), **env},
                           groups=groups)


@pytest.fixture
def site(mounts: Mounts) -> Iterator[Site]:
    decoy = mounts.lc.root / "decoy"  # outside the share, as /etc or /root would be
    decoy.mkdir(mode=0o755)
    for name, mode, text in (("secret", 0o600, "root secret\n"), ("public", 0o644, "root public\n")):
        (decoy / name).write_text(text)
        (decoy / name).chmod(mode)
    shutil.copy(shutil.which("true") or "/bin/true", decoy / "tool")
    (decoy / "tool").chmod(0o755)
    (decoy / "dir").mkdir(mode=0o755)
    for name in ("precious", "renameme", "linkme", "f"):
        (decoy / "dir" / name).write_text(f"root's {name}\n")
    r = as_lab_user(f"mkdir {mounts.a}/u")
    assert r.returncode == 0, r.stderr
    s = Site(mounts, decoy)
    s.before = s.snapshot()
    yield s
    assert s.snapshot() == s.before, "a root-owned decoy outside the share changed"


# -- one node, no race: a hard link outlives its name, which becomes a symlink out --

SWAP = 'cd "$A/u" && echo mine > f && ln f g && rm f && ln -s "$TARGET" f && '


@pytest.mark.parametrize("op, target, command", [
    ("read", "secret", "cat g"),
    ("write", "public", "echo pwned > g"),
    ("truncate", "public", ": > g"),
    ("chmod", "tool", "chmod 6777 g"),
    ("chown", "secret", f"chgrp {LAB_UID} g"),
    ("utime", "public", "touch -d @1000000000 g"),
])
def test_a_hard_link_whose_old_name_became_a_symlink_stays_the_users_file(site: Site, op, target, command):
    r = site.user(SWAP + command, TARGET=str(site.decoy / target))
    assert r.returncode == 0, f"{op} on the user's own file must succeed as on a local disk: {r.stderr}"
    assert "root" not in r.stdout, f"{op} read a root file: {r.stdout!r}"
    g = site.m.backing / "u/g"
    assert g.stat().st_uid == LAB_UID and (site.m.backing / "u/f").is_symlink()
    expect = {"read": "mine\n", "write": "pwned\n", "truncate": "", "chmod": "mine\n", "chown": "mine\n",
              "utime": "mine\n"}[op]
    assert g.read_text() == expect, f"{op} must act on the user's own file (the hard link)"
    if op == "read":
        assert r.stdout == "mine\n"
    if op == "chmod":
        assert g.stat().st_mode & 0o7777 == 0o6777
    if op == "utime":
        assert g.stat().st_mtime == 1_000_000_000


def test_the_control_file_cannot_be_reached_through_a_link(site: Site):
    digest = site.m.stats("A")["digest"]
    evil = json.dumps({"name": "evil", "faults": [{"error": "EIO", "op": "*", "path": "/*", "node": "*",
                                                  "probability": 1.0, "seed": 0}]})
    r = site.user(SWAP + f"echo '{evil}' > g", TARGET=str(site.m.lc.control))
    assert r.returncode == 0, r.stderr
    time.sleep(2.5)  # the clients re-read the control file every second
    for node in ("A", "B"):
        assert site.m.lc.wait_stats(node)["digest"] == digest, f"node {node} switched profile"


# -- two nodes: the directory a process stands in is replaced by a symlink out --

CROSS = 'mkdir "$A/x" && cd "$A/x" && echo mine > own && mv "$B/x" "$B/x.old" && ln -s "$DECOY/dir" "$B/x" && '


@pytest.mark.parametrize("op, command, fails, made", [
    ("unlink", "rm precious", "No such file", None),
    ("create", "echo new > created", None, "created"),
    ("mkdir", "mkdir newdir", None, "newdir"),
    ("symlink", "ln -s somewhere newlink", None, "newlink"),
    ("rename", "mv own renamed && mv renameme renamed2", "No such file", "renamed"),
    ("link", "ln own own.link && ln linkme linked", "No such file", "own.link"),
])
def test_the_directory_a_process_stands_in_stays_that_directory(site: Site, op, command, fails, made):
    r = site.user(CROSS + command)
    if fails:
        assert r.returncode != 0 and fails in r.stderr, f"{op}: {r.stderr}"
    else:
        assert r.returncode == 0, f"{op}: {r.stderr}"
    old = site.m.backing / "x.old"
    if made:
        made_path = old / made
        assert made_path.exists() or made_path.is_symlink(), f"{op} must land in the directory itself"
        assert made_path.lstat().st_uid == LAB_UID, f"{op} made a file owned by {made_path.lstat().st_uid}"


def test_cached_attributes_do_not_carry_a_chmod_through_a_swapped_directory(site: Site):
    site.set(named("linux").with_options(rtt_ms=0, jitter_ms=0))
    r = site.user('mkdir "$A/x" && echo mine > "$A/x/f" && stat "$A/x/f" >/dev/null && '
                  'mv "$B/x" "$B/x.old" && ln -s "$DECOY/dir" "$B/x" && chmod 4777 "$A/x/f"')
    # Either A still trusts its cached directory (the chmod lands on the user's
    # own file there) or it sees the symlink (then the root file refuses it).
    assert r.returncode == 0 or "Operation not permitted" in r.stderr, r.stderr


def test_racing_a_directory_against_a_symlink_out_never_writes_outside(site: Site):
    """B swaps x between a directory and a symlink out while A creates in x."""
    r = site.user(textwrap.dedent('''
        mkdir "$A/x"
        end=$(( $(date +%s) + 4 ))
        ( while [ "$(date +%s)" -lt "$end" ]; do
            mv "$B/x" "$B/x.d" 2>/dev/null; ln -s "$DECOY/dir" "$B/x" 2>/dev/null
            rm -f "$B/x"; mv "$B/x.d" "$B/x" 2>/dev/null
          done ) &
        i=0
        while [ "$(date +%s)" -lt "$end" ]; do
          i=$((i + 1)); echo x > "$A/x/f$i" 2>/dev/null; mkdir "$A/x/d$i" 2>/dev/null
          chmod 4777 "$A/x/f$i" 2>/dev/null; rm -f "$A/x/precious" 2>/dev/null
        done
        wait
        echo "$i"'''))
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) > 10, "the race loop hardly ran"


def test_racing_a_create_against_a_planted_symlink_never_creates_outside(site: Site):
    r = site.user(textwrap.dedent('''
        end=$(( $(date +%s) + 4 ))
        ( while [ "$(date +%s)" -lt "$end" ]; do
            ln -s "$DECOY/dir/planted" "$B/u/name" 2>/dev/null; rm -f "$B/u/name"
          done ) &
        while [ "$(date +%s)" -lt "$end" ]; do
          echo x > "$A/u/name" 2>/dev/null; rm -f "$A/u/name"
        done
        wait'''))
    assert r.returncode == 0, r.stderr
    assert not (site.decoy / "dir/planted").exists()


# -- ownership: created as the caller, never as root then chowned --

def test_new_files_in_a_setgid_directory_take_the_directorys_group(site: Site):
    team = site.m.backing / "team"
    team.mkdir()
    os.chown(team, 0, OTHER_GID)
    team.chmod(0o2777)
    r = site.user('echo x > "$A/team/f" && mkdir "$A/team/d"')
    assert r.returncode == 0, r.stderr
    for name in ("f", "d"):
        s = (team / name).stat()
        assert (s.st_uid, s.st_gid) == (LAB_UID, OTHER_GID), f"{name}: {s.st_uid}:{s.st_gid}"
    assert (team / "d").stat().st_mode & 0o2000, "a directory made in a setgid directory is setgid too"


def test_the_callers_supplementary_groups_apply_on_the_server(site: Site):
    shared = site.m.backing / "groupwork"
    shared.mkdir()
    os.chown(shared, 0, OTHER_GID)
    shared.chmod(0o770)
    r = site.user('echo x > "$A/groupwork/f"', groups=(OTHER_GID,))
    assert r.returncode == 0, f"a member of the directory's group may write in it: {r.stderr}"
    r = site.user('echo x > "$A/groupwork/g"')
    assert r.returncode != 0 and "Permission denied" in r.stderr


# -- the control channel and the client's own files --

def _nfs_package_copy() -> Path:
    """nfs/ where uid 1000 can read it (this checkout may sit under a private directory)."""
    d = Path(tempfile.mkdtemp(prefix="minihpc-nfs-pkg-"))
    d.chmod(0o755)
    shutil.copytree(ROOT / "nfs", d / "nfs", ignore=shutil.ignore_patterns("__pycache__"))
    for p in [d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return d


@pytest.mark.parametrize("cmd", ["show", "stats", "set off"])
def test_minihpc_nfs_tells_an_unprivileged_user_in_one_line(site: Site, cmd):
    pkg = _nfs_package_copy()
    try:
        r = as_lab_user(f"/usr/bin/python3 -m nfs.ctl {cmd}",
                        env={"PYTHONPATH": str(pkg), "MINIHPC_NFS_CONTROL": str(site.m.lc.control),
                             "MINIHPC_NFS_STATS": str(site.m.lc.stats_path("A"))})
    finally:
        shutil.rmtree(pkg)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("minihpc-nfs: error:") and "root" in r.stderr, r.stderr


def test_statistics_are_root_only(site: Site):
    stats = site.m.lc.stats_path("A")
    assert stats.stat().st_mode & 0o077 == 0, oct(stats.stat().st_mode)
    r = as_lab_user(f"cat {stats}")
    assert r.returncode != 0


# -- descriptors: one user cannot starve the daemon --

HOG = textwrap.dedent('''
    import os, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d, n, err = sys.argv[1], int(sys.argv[2]), 0
    fds = []
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        try:
            fds.append(os.open(f"{d}/f{i}", os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as e:
            err = e.errno
            break
    print(len(fds), err, flush=True)
    sys.stdin.read()  # hold them until told
''')


def test_one_user_opening_many_files_cannot_starve_other_users_or_the_client(site: Site):
    hogs = [subprocess.Popen(["setpriv", f"--reuid={LAB_UID}", f"--regid={LAB_UID}", "--clear-groups",
                              "/usr/bin/python3", "-c", HOG, f"{site.m.a}/u/hog{i}", "10500"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
            for i in range(2)]
    try:
        results = [tuple(map(int, h.stdout.readline().split())) for h in hogs]  # type: ignore[union-attr]
        # Another user (root here) still opens files on that node.
        for i in range(20):
            (site.m.a / f"other{i}").write_text("still works\n")
        assert (site.m.a / "other19").read_text() == "still works\n"
        # And the client's own threads still work: a profile switch reaches A.
        site.set(named("delay-3"))
        site.set(named("off"))
    finally:
        for h in hogs:
            h.communicate("", timeout=60)
    opened = sum(n for n, _ in results)
    assert any(e == errno.EMFILE for _, e in results), f"the user was never capped: {results}"
    assert opened < 21000, results
    deadline = time.monotonic() + 10
    while site.m.lc.wait_stats("A").get("handles", 0) != 0:
        assert time.monotonic() < deadline, f"handles left open: {site.m.stats('A')}"


def test_attack_helpers_run_as_the_lab_user():
    """The attacks above mean nothing if they ran as root."""
    r = as_lab_user("id -u; id -G")
    assert r.stdout.split() == [str(LAB_UID), str(LAB_UID)], r.stdout
    assert os.access("/usr/bin/python3", os.X_OK), "the hogs run /usr/bin/python3 as uid 1000"
