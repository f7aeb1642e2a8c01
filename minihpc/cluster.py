"""The one client of a running cluster: every command that reaches a node, from
the lab, the tests, the benchmarks and the CLI, goes through `Cluster`.

It runs a shell command on a node as a user, knows the nodes from the facts
`minihpc up` wrote, switches the NFS-style client's profile and waits until
every node runs it, reads and cleans each node's scratch, and returns sacct
rows as data. How a node is reached is the transport's business
(minihpc.transport).
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shlex
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from minihpc import ROOT, RUN_DIR, check_name
from minihpc.errors import MinihpcError
from minihpc.facts import Facts
from minihpc.transport import Transport, containers

ROOT_USER = "root"
# put() into a directory another user made first, or can write to, runs their
# code: `python -m snakemake` in it imports a planted snakemake/ before the real
# one. Runs as the writing user in one command with what it guards (bash; its
# input: parent, name, how=put|check, fresh=0|1):
# - the directories above, as really reached, are root's or the user's and
#   writable by no one else unless sticky (then no one else can rename what is
#   in them); group-writable passes if the group is the user's private group
#   with no other member (umask 002 makes those, e.g. a site's work_dir made
#   over ssh; Debian's OpenSSH allows the same, user-group-modes.patch);
# - dest is made with a plain mkdir (fails if anyone made it meanwhile) or,
#   already there, is a directory (lstat and stat agree: no symlink) of the
#   user's that group and others cannot write;
# - then it is entered, and checked to be what was checked.
CLAIM = r"""
export LC_ALL=C
unsafe() { printf 'minihpc-unsafe %s: %s\n' "$1" "$2"; exit 86; }
me=$(id -u) myname=$(id -un) mygid=$(id -g) private=-1
if [ "$(id -gn)" = "$myname" ]; then
  members=$(getent group "$mygid" | cut -d: -f4)
  if [ -z "$members" ] || [ "$members" = "$myname" ]; then private=$mygid; fi
fi
if [ "$how" = put ] && [ ! -d "$parent" ]; then
  (umask 022 && mkdir -p -- "$parent") || unsafe above "cannot make $parent"
fi
if [ "$how" = check ] && [ ! -e "$parent" ]; then exit 0; fi
cd -P -- "$parent" || unsafe above "cannot enter $parent"
p=$(pwd -P); dest=${p%/}/$name
while :; do
  st=$(stat -c '%u %a %U %g' -- "$p") || unsafe above "cannot stat $p"
  read -r owner mode oname group <<<"$st"
  [[ $mode =~ ^[0-7]+$ ]] || unsafe above "cannot read the mode of $p"
  [ "$owner" = 0 ] || [ "$owner" = "$me" ] || unsafe above "$p belongs to $oname (uid $owner), not to root or $myname"
  others=$(( 8#$mode & 8#1000 ? 0 : 8#$mode & (owner == me && group == private ? 8#2 : 8#22) ))
  if (( others )); then unsafe above "$p (mode $mode) can be written by others"; fi
  [ "$p" = / ] && break
  p=${p%/*}; p=${p:-/}
done
mine() {
  l=$(stat -c '%F|%u|%a|%d:%i|%U' -- "$name") || unsafe dir "cannot stat $dest"
  L=$(stat -L -c '%F|%u|%a|%d:%i|%U' -- "$name" 2>/dev/null)
  [ "$l" = "$L" ] || unsafe dir "$dest is a symbolic link"
  IFS='|' read -r type owner mode id oname <<<"$l"
  [[ $mode =~ ^[0-7]+$ ]] || unsafe dir "cannot read the mode of $dest"
  [ "$type" = directory ] || unsafe dir "$dest is a $type, not a directory"
  [ "$owner" = "$me" ] || unsafe dir "$dest belongs to $oname (uid $owner), not to $myname"
  if (( 8#$mode & 8#22 )); then unsafe dir "$dest (mode $mode) can be written by others"; fi
}
if [ -e "$name" ] || [ -L "$name" ]; then
  mine
  [ "$how" = check ] && exit 0
  if [ "$fresh" = 1 ]; then rm -rf -- "$name" || exit 1; fi
elif [ "$how" = check ]; then
  exit 0
fi
if [ ! -e "$name" ] && [ ! -L "$name" ]; then
  mkdir -m 755 -- "$name" || unsafe dir "could not make $dest (did someone else make it meanwhile?)"
fi
mine
cd -P -- "$name" && [ "$(stat -c '%d:%i' .)" = "$id" ] || unsafe dir "$dest changed while it was checked"
"""
UNSAFE = re.compile(r"^minihpc-unsafe (dir|above): (.*)$", re.M)
# Runs on the node from standard input: only the node's python3 is needed.
SCRATCH_INSPECT = ROOT / "scratch/inspect.py"


class UnsafeDir(MinihpcError):
    """A directory minihpc would write into that someone else made or can
    change (`where`: "dir" itself, or a directory "above" it)."""

    def __init__(self, what: str, fix: str, where: str) -> None:
        super().__init__(what, fix)
        self.where = where


@dataclass
class Result:
    cmd: str
    rc: int
    out: str
    seconds: float

    def text(self) -> str:
        body = self.out if not self.out or self.out.endswith("\n") else self.out + "\n"
        return f"$ {self.cmd}\n{body}[exit {self.rc}]\n"


@dataclass
class Running:
    """A command started on a node and not yet waited for."""

    cmd: str
    proc: subprocess.Popen
    started: float
    # Says the transport the command has ended (Transport.done), once.
    ended: Callable[[], None] = lambda: None

    def wait(self, timeout: float = 900) -> Result:
        out, _ = self.proc.communicate(timeout=timeout)
        self.ended()
        self.ended = lambda: None
        return Result(self.cmd, self.proc.returncode, out, time.monotonic() - self.started)


class Cluster:
    def __init__(self, facts: Facts, transport: Transport) -> None:
        self.facts, self.transport = facts, transport

    @classmethod
    def local(cls, run_dir: Path = RUN_DIR) -> Cluster:
        """The cluster `minihpc up` brought up from this checkout (MINIHPC_CLUSTER's, if named)."""
        check_name()
        return cls(Facts.read(run_dir), containers)

    # -- commands ------------------------------------------------------------

    def sh(self, script: str, node: str | None = None, user: str | None = None, workdir: str | None = None,
           timeout: float = 900, stdin: bytes | None = None) -> Result:
        """Run `script` in a bash login shell on `node` (the login node) as
        `user` (the lab user); stdout and stderr merged."""
        t = time.monotonic()
        argv = self.transport.command(node or self.facts.login, script, user or self.facts.lab_user, workdir)
        try:
            if stdin is None:
                # errors="replace": what users named (a job, a file) may be any bytes, never a crash here.
                r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", timeout=timeout, check=False, stdin=subprocess.DEVNULL)
                out = r.stdout
            else:
                rb = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    timeout=timeout, check=False)
                r, out = rb, rb.stdout.decode(errors="replace")  # type: ignore[assignment]
        finally:
            self.transport.done(argv)
        return Result(script, r.returncode, out, time.monotonic() - t)

    def put(self, dest: str, sources: Sequence[tuple[Path, str, Callable[[str], bool] | None]],
            fresh: bool = False) -> Result:
        """Copy local files and directories into `dest` on the shared
        filesystem, owned by the lab user (as whom they are written). Each
        source is (local path, name under dest, skip(name relative to the
        source) or None); `fresh` empties dest first. Raises UnsafeDir, before
        anything is written or removed, if dest is not the user's own (see CLAIM)."""
        f = self.facts

        def owned(skip: Callable[[str], bool] | None, top: str) -> Callable[[tarfile.TarInfo], tarfile.TarInfo | None]:
            def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
                rel = info.name[len(top):].lstrip("/")
                if rel and skip is not None and skip(rel):
                    return None
                info.uid = info.gid = f.lab_uid
                info.uname = info.gname = f.lab_user
                return info
            return keep

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for src, name, skip in sources:
                # Under a top directory the extraction strips: dest itself is never touched by the archive.
                top = "t" if name in ("", ".") else f"t/{name}"
                tar.add(src, arcname=top, filter=owned(skip, top))
        # Checked, created and entered in one command: nothing can be swapped in between.
        return self._claim(dest, "put", fresh, "tar -x --strip-components=1", stdin=buf.getvalue())

    def check_dir(self, dest: str) -> None:
        """Raise UnsafeDir if `dest` (which need not exist) could not be put()
        into: the same checks, nothing created or changed."""
        self._claim(dest, "check", False, "true")

    def _claim(self, dest: str, how: str, fresh: bool, then: str, stdin: bytes | None = None) -> Result:
        path = PurePosixPath(dest)
        if not path.is_absolute() or path.name in ("", ".", "..") or ".." in path.parts:
            raise MinihpcError(f"{dest!r} is not a plain absolute path", "give a directory under the shared filesystem")
        script = (f"parent={shlex.quote(str(path.parent))} name={shlex.quote(path.name)} how={how} "
                  f"fresh={int(fresh)}\n{CLAIM}\n{then}")
        r = self.sh(script, stdin=stdin)
        m = UNSAFE.search(r.out)
        if m:
            where, why = m.groups()
            user = self.facts.lab_user
            fix = (f"it must be a directory of {user}'s that no one else can write to: have its owner remove it "
                   "(yours: chmod go-w it)" if where == "dir" else
                   f"every directory above {dest} must belong to root or {user} and be writable by no one else "
                   "(or be sticky, as /tmp is): ask the administrator, or on a site choose another work_dir")
            raise UnsafeDir(f"refusing {dest}: {why}", fix, where)
        return r

    def pipe(self, script: str, node: str | None = None, user: str | None = None, workdir: str | None = None,
             timeout: float = 900) -> tuple[int, bytes, str]:
        """Run `script` for its raw standard output (e.g. a tar stream): (exit
        code, stdout bytes, stderr text)."""
        argv = self.transport.command(node or self.facts.login, script, user or self.facts.lab_user, workdir)
        try:
            r = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        finally:
            self.transport.done(argv)
        return r.returncode, r.stdout, r.stderr.decode(errors="replace")

    def root(self, script: str, node: str | None = None, timeout: float = 900) -> Result:
        return self.sh(script, node=node, user=ROOT_USER, timeout=timeout)

    def spawn(self, script: str, node: str | None = None, user: str | None = None,
              workdir: str | None = None) -> Running:
        """Start `script` and return at once (to watch the cluster while it runs)."""
        argv = self.transport.command(node or self.facts.login, script, user or self.facts.lab_user, workdir)
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    stdin=subprocess.DEVNULL)
        except BaseException:
            self.transport.done(argv)
            raise
        return Running(script, proc, time.monotonic(), lambda: self.transport.done(argv))

    # -- Slurm ---------------------------------------------------------------

    def node_states(self) -> dict[str, str]:
        """Each compute node Slurm knows, and its state (idle, alloc, down*, ...)."""
        r = self.sh("sinfo -h -N -o '%N %t'")
        if r.rc != 0:
            raise MinihpcError(f"sinfo failed on {self.facts.login}: {r.out.strip()}",
                               "is the cluster up? minihpc status")
        return dict(line.split(None, 1) for line in r.out.splitlines() if line.strip())

    def nodes(self) -> list[dict[str, str]]:
        """Each compute node's state, size, GRES and partitions (sinfo has a row per node and partition)."""
        r = self.sh("sinfo -h -N -o '%N|%T|%c|%m|%G|%P'")
        if r.rc != 0:
            raise MinihpcError(f"sinfo failed on {self.facts.login}: {r.out.strip()}",
                               "is the cluster up? minihpc status")
        nodes: dict[str, dict[str, str]] = {}
        for row in parse_sacct(r.out, ("node", "state", "cpus", "mem", "gres", "partition")):
            n = nodes.setdefault(row["node"], {**row, "partitions": ""})
            n["partitions"] = ",".join(filter(None, [n["partitions"], row["partition"]]))
        return list(nodes.values())

    def partitions(self) -> list[dict[str, str]]:
        """Each partition as slurmctld holds it (scontrol's KEY=VALUE fields)."""
        r = self.sh("scontrol -o show partition")
        if r.rc != 0:
            raise MinihpcError(f"scontrol show partition failed: {r.out.strip()}", "is the cluster up? minihpc status")
        return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in r.out.splitlines() if line]

    def qos(self) -> list[dict[str, str]]:
        """Each QOS and its limits, as slurmdbd holds them."""
        fields = ("Name", "Priority", "MaxWall", "MaxJobsPU", "MaxSubmitPU", "Flags")
        r = self.sh(f"sacctmgr -n -P show qos format={','.join(fields)}")
        if r.rc != 0:
            raise MinihpcError(f"sacctmgr show qos failed: {r.out.strip()}", "is the cluster up? minihpc status")
        return parse_sacct(r.out, fields)

    def submit(self, script: str, options: Sequence[str], name: str, chdir: str | None = None) -> str:
        """sbatch a small job of minihpc's own (`script` wrapped) as the lab
        user, its output in `chdir` (default the shared directory); its id."""
        where = shlex.quote(chdir or self.facts.shared)
        r = self.sh(f"mkdir -p {where} && sbatch --parsable --job-name={shlex.quote(name)} --chdir={where} "
                    f"--output=%x-%j.out {' '.join(shlex.quote(o) for o in options)} --wrap {shlex.quote(script)}")
        if r.rc != 0 or not r.out.strip().split(";")[0].isdigit():
            raise MinihpcError(f"sbatch failed: {r.out.strip()[-300:]}",
                               "check the partition, account and QOS asked for")
        return r.out.strip().split(";")[0]

    def ended(self, job: str, timeout: float) -> dict[str, str]:
        """The job's sacct row (MaxRSS its steps' largest) once it has ended."""
        fields = ("JobID", "State", "ExitCode", "ElapsedRaw", "MaxRSS", "ReqMem", "Timelimit", "NodeList")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = parse_sacct(self.sh(f"sacct -n -P -j {job} -o {','.join(fields)}").out, fields)
            if rows and rows[0]["State"] not in ("PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED"):
                return {**rows[0], "MaxRSS": largest_step_rss(rows).get(job, "")}
            time.sleep(3)
        raise MinihpcError(f"job {job} did not end within {timeout:.0f} s", "look at squeue")

    def now(self) -> str:
        """The login node's clock as sacct's -S wants it; waits out the second,
        as sacct's resolution is one second."""
        stamp = self.sh("date +%FT%T").out.strip()
        time.sleep(1)
        return stamp

    def sacct(self, since: str, fields: tuple[str, ...] = ("JobID", "JobName", "Comment", "NodeList", "State"),
              user: str | None = None, steps: bool = False, until: str | None = None,
              all_users: bool = False, node: str | None = None) -> list[dict[str, str]]:
        """Allocations `user` (the lab user; with all_users, everyone `user` may
        see: PrivateData shows a user only their own, so everyone's is root's) had in
        the window since `since` (until `until`, default now) (and, with
        `steps`, their steps: JobID 7.batch, 7.0), one dict per row with `fields` as keys; run on `node`
        (default the login node)."""
        flags = ("" if steps else " -X") + (" -a" if all_users else "")
        end = f" -E {shlex.quote(until)}" if until else ""
        # Standard error apart: a warning must not land among the rows (see parse_delimited).
        delimiter = f":minihpc-{secrets.token_hex(16)}:"
        rc, out, err = self.pipe(f"sacct -n{flags} -p --delimiter={delimiter} -S {shlex.quote(since)}{end} "
                                 f"-o {','.join(fields)}", user=user, node=node)
        if rc != 0:
            raise MinihpcError(f"sacct failed: {(err or out.decode(errors='replace')).strip()[:500]}",
                               "is slurmdbd up? minihpc status")
        return parse_delimited(out.decode(errors="replace"), fields, delimiter)

    # -- the shared filesystem -------------------------------------------------

    def set_nfs_profile(self, *args: str, timeout: float = 20) -> Result:
        """`minihpc-nfs set ARGS` (as root); returns once the client on the login
        node and on every compute node runs the new profile."""
        r = self.root("minihpc-nfs set " + " ".join(shlex.quote(a) for a in args))
        m = re.search(r"^profile: \S+ \(([0-9a-f]{12})\)", r.out, re.M)
        if r.rc != 0 or m is None:
            raise MinihpcError(f"minihpc-nfs set {' '.join(args)} failed: {r.out.strip()}",
                               "see minihpc nfs list for the profiles")
        digest = m.group(1)
        deadline = time.monotonic() + timeout
        for node in self.facts.client_nodes:
            while digest not in self.root("minihpc-nfs stats", node=node).out:
                if time.monotonic() > deadline:
                    raise MinihpcError(f"the NFS client on {node} did not switch to {args[0]} ({digest})",
                                       f"look at its log: minihpc logs {node}")
                time.sleep(0.3)
        return r

    # -- node scratch ------------------------------------------------------------

    def scratch(self, node: str, under: str | None = None) -> Scratch:
        """The node's scratch: its size and use, and the regular files under
        `under` (default all of it), read as root on that node by scratch/inspect.py."""
        out = self._inspect_scratch(node, "show", self.facts.scratch, *([under] if under else []))
        return Scratch(node, out["size_mb"], out["used_mb"], out["free_mb"], out["files"])

    def clean_scratch(self, nodes: list[str]) -> None:
        """Empty the nodes' scratch, as a site's epilog would; never while a job
        is queued or running (its staged files are in use)."""
        queue = self.root("squeue -h -o 'job %i of %u, %T'")
        if queue.rc != 0:
            raise MinihpcError(f"cannot ask SLURM for running jobs: {queue.out.strip()}", "is the cluster up?")
        if queue.out.strip():
            jobs = "; ".join(line.strip() for line in queue.out.strip().splitlines())
            raise MinihpcError(f"jobs are queued or running ({jobs})", "wait for them or scancel them, then clean")
        for node in nodes:
            self._inspect_scratch(node, "clean", self.facts.scratch)

    def _inspect_scratch(self, node: str, *args: str) -> dict:
        r = self.sh(f"python3 - {shlex.join(args)}", node=node, user=ROOT_USER, stdin=SCRATCH_INSPECT.read_bytes())
        try:
            out = json.loads(r.out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise MinihpcError(f"{node}: scratch {args[0]} failed (exit {r.rc}): {r.out.strip()[-300:]}",
                               "is the node up? minihpc status") from None
        if "error" in out or out.get("failed"):
            raise MinihpcError(f"{node}: scratch {args[0]}: {out.get('error') or '; '.join(out['failed'])}",
                               f"look at it: minihpc scratch {node}")
        return out


@dataclass(frozen=True)
class Scratch:
    """One node's scratch as scratch/inspect.py saw it."""

    node: str
    size_mb: int
    used_mb: int
    free_mb: int
    files: list[str]


def sacct_kib(size: str) -> float:
    """A sacct size (624604K, 250M, 1.2G, 3T; a bare number is bytes) in KiB; 0 for none."""
    units = {"K": 1, "M": 1024, "G": 1024 ** 2, "T": 1024 ** 3}
    return float(size[:-1]) * units[size[-1]] if size and size[-1] in units else float(size or 0) / 1024


def largest_step_rss(rows: list[dict[str, str]]) -> dict[str, str]:
    """Each allocation's largest MaxRSS over its steps, from sacct rows with
    steps (JobID 7.batch, 7.0) and MaxRSS; allocations without one are absent."""
    rss: dict[str, str] = {}
    for s in rows:
        base = s["JobID"].split(".")[0]
        if s["MaxRSS"] and sacct_kib(s["MaxRSS"]) >= sacct_kib(rss.get(base, "0")):
            rss[base] = s["MaxRSS"]
    return rss


def parse_sacct(text: str, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """`-n -P` output of what only administrators write (sinfo, sacctmgr,
    squeue formats) as rows; job fields users write go through parse_delimited."""
    return [dict(zip(fields, line.split("|"), strict=True)) for line in text.splitlines() if line.strip()]


def parse_delimited(text: str, fields: tuple[str, ...], delimiter: str) -> list[dict[str, str]]:
    """`sacct -n -p --delimiter=DELIMITER` output as rows. Users write job
    names, comments and working directories, and sbatch takes any byte but
    NUL in them (newlines, `|`, 0x1f, 0x01 are stored and printed as given):
    no fixed delimiter, and no line, is safe. A delimiter drawn at random for
    each call cannot be in what was stored before it. With -p every field,
    the last too, ends with it, so the text is F D F D ... F D, every row
    after the first starting with its newline. (sacct --json is safe too, but
    its values are not sacct's columns: MaxRSS, ReqMem, Timelimit, Elapsed,
    State and the times are formatted by sacct, and callers read those.)"""
    if not text.strip():
        return []
    parts, n = text.split(delimiter), len(fields)
    cells = parts[:-1]
    starts = range(n, len(cells), n)
    if len(cells) % n or parts[-1].strip() or any(not cells[i].startswith("\n") for i in starts):
        raise MinihpcError(f"sacct's output is not rows of {n} fields: {text[:300]!r}",
                           "look at it: minihpc shell, then sacct with the same options")
    for i in starts:
        cells[i] = cells[i][1:]
    return [dict(zip(fields, cells[i:i + n], strict=True)) for i in range(0, len(cells), n)]
