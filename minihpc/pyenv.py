"""A workflow's Python requirements as a site's shared environment.

On a site, software a workflow needs comes from an environment every node
sees at the same path. Here: a venv on the shared filesystem, layered over
the cluster's own Snakemake environment (a .pth line puts the latter's
site-packages after the venv's own), so Snakemake, its plugins, `script:`
rules and a plain `python` on PATH all see the workflow's packages.

The host's own pip resolves and downloads the wheels for the login node's
Python and platform (its index, proxy and CA bundle stay the host's); the
login node installs them offline from the shared filesystem. An environment
is named by the content of its requirements and the cluster's environment
under it, reused while neither changes, and read-only once made.

Requirements files come from someone else's workflow, and the host must
never run their code or read its own files for them: only names, extras,
versions and markers reach the host's pip, and `-r`/`-c` only to files
inside the workflow. Builds of one environment take turns under a lock;
a finished one (its metadata renamed in last) is never removed by a build,
and a half-built one (no metadata) is rebuilt under the lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from minihpc.cluster import Cluster, Result
from minihpc.errors import BadInput, MinihpcError

DEFAULT_FILE = "requirements.txt"  # picked up at a workflow's root
PREFIX = "py-"
META = "minihpc-env.json"  # renamed in last: an environment without it is half-built
ROUNDS = 4  # installs tried, each after downloading what the last one missed
ENV_NAME = re.compile(r"py-[0-9a-f]{12}")
LOCK_WAIT = 1800  # seconds a build waits for another build of the same environment
LOCK_TIMEOUT = 75  # the build script's exit code when that wait runs out
MAX_FILE = 1 << 20  # bytes: a requirements file is small; anything bigger is not one

# -- the one form of requirement accepted: a strict subset of PEP 508 ---------------
NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
# PEP 440's public and local versions (with `v`, epochs, pre/post/dev releases).
VERSION = (r"v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?"
           r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?(?:[-_.]?dev[-_.]?[0-9]*)?"
           r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?")
SPECIFIER = re.compile(rf"===\s*[A-Za-z0-9._+!-]+|(?:==|!=)\s*{VERSION}(?:\.\*)?|(?:~=|<=|>=|<|>)\s*{VERSION}",
                       re.IGNORECASE)
REQUIREMENT = re.compile(rf"(?P<name>{NAME})\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<specs>[^;]*?)\s*(?:;(?P<marker>.*))?")
MARKER_VARS = frozenset({"python_version", "python_full_version", "os_name", "sys_platform", "platform_release",
                         "platform_system", "platform_version", "platform_machine",
                         "platform_python_implementation", "implementation_name", "implementation_version",
                         "extra"})
# Quoted marker values may hold spaces ("x86_64 aarch64"): requirement() refuses any word starting with `-`.
MARKER_TOKEN = re.compile(r"\s*(?:(?P<str>'[A-Za-z0-9._*+! -]*'|\"[A-Za-z0-9._*+! -]*\")"
                          r"|(?P<op>===|==|!=|<=|>=|~=|<|>)|(?P<word>[A-Za-z_]+)|(?P<paren>[()]))")
# pip reads a "name" with one of these endings as a file on the host's disk.
ARCHIVES = (".zip", ".whl", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tlz", ".tar.lz",
            ".tar.lzma")
INCLUDE = re.compile(r"(?:(?P<short>-r|-c) |(?P<long>--requirement|--constraint)[ =])(?P<path>.*)")
INCLUDE_PATH = re.compile(r"[A-Za-z0-9._+/-]+")
EDITABLE = re.compile(r"(?:-e|--editable)\b")
COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's own: `#` at the start or after whitespace

FIX_FORM = ("write a name with optional [extras], version specifiers and ; markers, e.g. numpy>=1.26,<3 or "
            "tomli; python_version < \"3.11\"")
FIX_WHEEL = ("publish it as a wheel on your index and list it by name and version (e.g. mypkg==1.2); the host's "
             "pip index and proxy come from the host's pip config")
FIX_OPTION = ("remove the line: the host's pip takes its index, proxy and CA from the host's own pip config "
              "(pip.conf, PIP_INDEX_URL), which whoever runs minihpc sets, and installs wheels only")
FIX_INCLUDE = "keep included files inside the workflow directory and name them by a relative path"

# Runs on the login node with the cluster's python3: what the environment
# there is, for the wheels' tags and the environment's name.
BASE_PROBE = r"""
import json, subprocess, sys, sysconfig
from packaging import tags
platforms = list(dict.fromkeys(t.platform for t in tags.sys_tags() if t.platform != "any"))
freeze = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout.split()
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "prefix": sys.prefix,
                  "abi": tags.interpreter_name() + tags.interpreter_version(),
                  "site_packages": sysconfig.get_paths()["purelib"],
                  "purelib_rel": sysconfig.get_path("purelib", vars={"base": "", "platbase": ""}).lstrip("/"),
                  "platforms": platforms, "freeze": freeze}))
"""


@dataclass(frozen=True)
class Requirements:
    """What a workflow asks for, flattened and checked: requirement lines
    and constraint lines from the files and the -r/-c files they include.
    There are no pip options: nothing a workflow writes changes how the
    host's pip behaves."""

    source: str  # for people: "requirements.txt at the workflow's root", "--pip ujson"
    lines: tuple[str, ...]
    constraints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Base:
    """The cluster's own Python environment on the login node."""

    python: str
    prefix: str
    abi: str
    site_packages: str
    purelib_rel: str
    platforms: list[str]
    freeze: list[str]


@dataclass
class Env:
    """An environment a run used: made for it, reused, or the cluster's own."""

    name: str
    path: str
    source: str
    reused: bool = False
    made: str = ""
    seconds: float = 0.0
    own: list[str] = field(default_factory=list)  # pip freeze of what it adds
    freeze: list[str] = field(default_factory=list)  # pip freeze of all it sees

    def activate(self) -> str:
        """Shell that puts the environment first: Snakemake, and through
        sbatch --export=ALL every job's `python`, come from it."""
        if not self.name.startswith(PREFIX):
            return ""
        q = shlex.quote(self.path)
        return f"export VIRTUAL_ENV={q} PATH={q}/bin:\"$PATH\"; "


# -- what the workflow asks for (checked before anything is touched) ----------------

def requirements(workflow: Path, files: list[str], pip: list[str], none: bool) -> Requirements | None:
    """The run's requirements: --requirements files and --pip packages, else
    a requirements.txt at the workflow's root; None for none. Files inside
    the workflow (the workflow's own) may include only files inside it; a
    file given from elsewhere only files beside or below it."""
    if none and (files or pip):
        raise BadInput("--no-requirements with --requirements or --pip", "give one or the other")
    if none:
        return None
    workflow = workflow.resolve()
    lines = [requirement(p, "--pip") for p in pip]
    tops: list[tuple[Path, Path]] = []  # (file, the directory its includes must stay in)
    for f in files:
        p = Path(f)
        candidates = [p] if p.is_absolute() else [Path.cwd() / p, workflow / p]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise BadInput(f"--requirements {f}: no such file (looked in {' and '.join(map(str, candidates))})",
                           "give a pip requirements file, e.g. --requirements requirements.txt")
        real = found.resolve()
        # Where the name lies, not where it leads: a link in the workflow is the workflow's.
        root = workflow if found.parent.resolve().is_relative_to(workflow) else real.parent
        tops.append((_inside(real, root, workflow, f"--requirements {f}"), root))
    default = workflow / DEFAULT_FILE
    if not files and not pip and default.is_file():
        tops.append((_inside(default.resolve(), workflow, workflow, DEFAULT_FILE), workflow))
        source = f"{DEFAULT_FILE} at the workflow's root"
    elif not files and not pip:
        return None
    else:
        source = ", ".join([*(str(p) for p, _ in tops), *([f"--pip {' '.join(pip)}"] if pip else [])])
    constraints: list[str] = []
    for path, root in tops:
        _flatten(path, root, workflow, lines, constraints, seen=set(), constraint=False)
    if not lines:
        raise BadInput(f"{source} lists no packages", "add requirement lines, or run with --no-requirements")
    return Requirements(source, tuple(lines), tuple(constraints))


def requirement(text: str, where: str) -> str:
    """`text` as the one form of requirement line the host's pip is given
    (whitespace made single spaces), or BadInput naming `where`, the text
    and the fix. Accepted: a name, optional [extras], optional version
    specifiers, optional `; markers` over PEP 508's variables. Refused: URLs,
    paths, files, pip options, and anything else pip would read its own way
    (`${VAR}` is expanded by pip from the host's environment, `#` ends it)."""
    shown = text.strip()

    def refuse(problem: str, fix: str = FIX_FORM) -> BadInput:
        return BadInput(f"{where}: {shown!r} {problem}", fix)

    odd = re.search(r"[^\t\x20-\x7e]", text)
    if odd:
        raise refuse(f"holds the character {odd.group()!r}, which no requirement has")
    line = " ".join(text.split())
    if EDITABLE.match(line):
        raise refuse("is an editable install, which the cluster cannot build offline",
                     "list the package by name and version, or build a wheel and publish it to your index")
    if line == "--pre":
        raise refuse("is a pip option, which requirements may not set",
                     "remove it and pin the pre-release you want, e.g. pkg==2.0rc1 (a pinned pre-release is allowed)")
    if line.startswith("-"):
        raise refuse("is a pip option, which requirements may not set", FIX_OPTION)
    option = next((t for t in line.split(" ") if t.startswith("-")), None)
    if option is not None:
        raise refuse(f"carries the pip option {option!r}, which requirement lines may not",
                     "remove it: " + FIX_FORM)
    head = line.split(";", 1)[0]
    if "@" in line:
        raise refuse("is a direct reference (name @ URL or path), which the host's pip would fetch or build "
                     "on the host", FIX_WHEEL)
    if re.search(r"[/\\:]|^[.~]", head):
        raise refuse("is a path or a URL, which the host's pip would read or build on the host", FIX_WHEEL)
    m = REQUIREMENT.fullmatch(line)
    if m is None:
        raise refuse("is not a requirement: it must start with a package name")
    if m["name"].lower().endswith(ARCHIVES):
        raise refuse("names a file, which the host's pip would read from the host's disk", FIX_WHEEL)
    if m["extras"] is not None and not re.fullmatch(rf"\s*{NAME}(?:\s*,\s*{NAME})*\s*", m["extras"]):
        raise refuse(f"has extras [{m['extras']}] that are not names")
    specs = m["specs"]
    if specs.startswith("["):
        raise refuse("has extras without their closing ']'")
    if specs.startswith("(") and specs.endswith(")"):
        specs = specs[1:-1].strip()
    for spec in specs.split(",") if specs else []:
        if not SPECIFIER.fullmatch(spec.strip()):
            raise refuse(f"has {spec.strip()!r}, which is not a version specifier (~= == != <= >= < > === "
                         "and a version)")
    if m["marker"] is not None:
        problem = _marker(m["marker"])
        if problem:
            raise refuse(f"has a marker minihpc does not accept: {problem}")
    return line


def _marker(text: str) -> str:
    """Why `text` is not a marker of PEP 508's (variables, quoted values,
    comparisons, and/or, parentheses), or ''."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text.rstrip()):
        t = MARKER_TOKEN.match(text, pos)
        if t is None:
            return f"{text[pos:].strip()!r} is not a variable, quoted value or operator"
        kind = t.lastgroup or ""
        tokens.append((kind, t[kind]))
        pos = t.end()
    i = 0

    def peek(ahead: int = 0) -> tuple[str, str]:
        return tokens[i + ahead] if i + ahead < len(tokens) else ("", "")

    def value() -> str:
        nonlocal i
        kind, word = peek()
        if kind == "str" or (kind == "word" and word in MARKER_VARS):
            i += 1
            return ""
        return (f"expected a marker variable ({', '.join(sorted(MARKER_VARS))}) or a quoted value, "
                f"found {repr(word) if word else 'nothing'}")

    def atom() -> str:
        nonlocal i
        if peek()[1] == "(":
            i += 1
            problem = expr()
            if problem or peek()[1] != ")":
                return problem or "a '(' is not closed"
            i += 1
            return ""
        problem = value()
        if problem:
            return problem
        if peek()[0] == "op" or peek()[1] == "in":
            i += 1
        elif peek()[1] == "not" and peek(1)[1] == "in":
            i += 2
        else:
            return "expected a comparison (== != < <= > >= ~= === in, not in)"
        return value()

    def expr() -> str:
        nonlocal i
        problem = atom()
        while not problem and peek()[1] in ("and", "or"):
            i += 1
            problem = atom()
        return problem

    problem = expr()
    return problem or (f"unexpected {peek()[1]!r}" if i < len(tokens) else "")


def _inside(real: Path, root: Path, workflow: Path, where: str) -> Path:
    """`real` (links followed) if it lies in `root`, else BadInput: a
    workflow must not make the host read its files, not even into an error."""
    if not real.is_relative_to(root):
        raise BadInput(f"{where} resolves to {real}, outside {'the workflow directory ' * (root == workflow)}{root}",
                       FIX_INCLUDE)
    return real


def _shown(path: Path, workflow: Path) -> str:
    """A file as the user finds it: relative to the workflow when inside it."""
    return str(path.relative_to(workflow)) if path.is_relative_to(workflow) else str(path)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with `\\` continuations joined as pip joins
    them, so a line is checked as pip would have read it."""
    out: list[tuple[int, str]] = []
    joined: list[str] = []
    first = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.endswith("\\") or COMMENT.match(line):
            line = " " + line if COMMENT.match(line) else line
            out.append((first, "".join([*joined, line])) if joined else (n, line))
            joined = []
        else:
            first = first if joined else n
            joined.append(line.strip("\\"))
    if joined:
        out.append((first, "".join(joined)))
    return out


def _flatten(path: Path, root: Path, workflow: Path, lines: list[str], constraints: list[str], seen: set[Path],
             constraint: bool) -> None:
    if path in seen:
        return
    seen.add(path)
    shown = _shown(path, workflow)
    try:
        if path.stat().st_size > MAX_FILE:
            raise BadInput(f"{shown} is over {MAX_FILE >> 20} MiB, which no requirements file is",
                           "give a pip requirements file")
        text = path.read_bytes().decode()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read requirements file {shown}: {e}", "give a readable UTF-8 text file") from None
    into = constraints if constraint else lines
    for n, raw in _logical_lines(text):
        line = " ".join(COMMENT.sub("", raw).split())
        if not line:
            continue
        where = f"{shown}:{n}"
        m = INCLUDE.fullmatch(line)
        if m is None:
            into.append(requirement(COMMENT.sub("", raw), where))
            continue
        rel = m["path"]
        if not INCLUDE_PATH.fullmatch(rel) or rel.startswith("-"):
            raise BadInput(f"{where}: {line!r} includes {rel!r}, which is not a plain path to a file",
                           FIX_INCLUDE)
        target = _inside((path.parent / rel).resolve(), root, workflow, f"{where}: {line!r}")
        if not target.is_file():
            raise BadInput(f"{where}: {rel} not found (looked for {target})", "fix the -r/-c line or remove it")
        kind = constraint or (m["short"] or m["long"]) in ("-c", "--constraint")
        _flatten(target, root, workflow, lines, constraints, seen, kind)


# -- environments on the shared filesystem -------------------------------------------

def envs_dir(cluster: Cluster) -> str:
    return f"{cluster.facts.shared}/.envs"


def _lock(cluster: Cluster, name: str) -> str:
    """The file builds (and removals) of environment `name` take turns on.
    flock(2) on the login node: the NFS-style client does not share locks
    across nodes (yet), but every build and removal runs on the login node,
    where the kernel serialises flocks on the one mount; a site's NFS shares
    them anyway. Never removed: unlinking a lock file someone waits on would
    let two holders in."""
    return f"{envs_dir(cluster)}/.lock-{name}"


def _open_lock(lock: str) -> str:
    """Shell that opens `lock` on descriptor 9, readable by the lab user
    alone (whoever can open it could flock it and stall every build)."""
    return f'old=$(umask); umask 077; exec 9>>{shlex.quote(lock)}; umask "$old"'


def base(cluster: Cluster) -> Base:
    r = cluster.sh("python3 -", stdin=BASE_PROBE.encode())
    try:
        return Base(**json.loads(r.out.strip().splitlines()[-1]))
    except (IndexError, json.JSONDecodeError, TypeError):
        raise MinihpcError(f"cannot read the cluster's Python environment on {cluster.facts.login} "
                           f"(exit {r.rc}): {r.out.strip()[-300:]}", "is the cluster up? minihpc status") from None


def name_of(req: Requirements, b: Base) -> str:
    """Named by the requirements' content and the environment under it: a
    new image (another Python, other base packages) makes a new one."""
    material = json.dumps([req.lines, req.constraints, b.python, b.abi, b.platforms[:1], sorted(b.freeze)])
    return PREFIX + hashlib.sha256(material.encode()).hexdigest()[:12]


def provide(cluster: Cluster, req: Requirements, say=print) -> Env:
    """The environment for `req`: reused if made before (or by another run
    while this one waited), else made (wheels downloaded by the host's pip,
    installed offline on the login node)."""
    b = base(cluster)
    name = name_of(req, b)
    path = f"{envs_dir(cluster)}/{name}"
    existing = _check_dir_and_read(cluster, name, wait=True)
    if existing is not None:
        say(f"minihpc: reusing Python environment {name} (made {existing['made']} in {existing['seconds']} s, "
            f"{len(existing['own'])} package(s) over the cluster's) for {req.source}")
        return _env(name, path, req, existing, reused=True)
    say(f"minihpc: making Python environment {name} for {req.source}: the host's pip downloads the wheels "
        f"for Python {b.python} ({b.abi}, {b.platforms[0]}), the login node installs them offline")
    t0 = time.time()
    build = secrets.token_hex(6)  # this build's own: its staging directory, and its mark in the metadata
    with tempfile.TemporaryDirectory(prefix="minihpc-wheels-") as tmp:
        download(req, b, Path(tmp))
        _install(cluster, req, b, name, build, Path(tmp), t0, say)
    meta = _check_dir_and_read(cluster, name)
    if meta is None:
        raise MinihpcError(f"environment {name} was installed but {META} is missing", f"remove it: minihpc env "
                           f"remove {name}, and run again")
    if meta.get("build") != build:
        say(f"minihpc: reusing Python environment {name}, which another run made while this one waited "
            f"(made {meta['made']} in {meta['seconds']} s) for {req.source}")
        return _env(name, path, req, meta, reused=True)
    say(f"minihpc: made {name} in {meta['seconds']} s: {', '.join(meta['own']) or 'nothing beyond the cluster'}")
    return _env(name, path, req, meta, reused=False)


def _env(name: str, path: str, req: Requirements, meta: dict, reused: bool) -> Env:
    return Env(name, path, req.source, reused, meta["made"], meta["seconds"], meta["own"], meta["freeze"])


def cluster_own(cluster: Cluster) -> Env:
    """The cluster's own environment, for the report of a run without requirements."""
    b = base(cluster)
    return Env("the cluster's own", b.prefix, "no requirements", freeze=b.freeze)


def _check_dir_and_read(cluster: Cluster, name: str, wait: bool = False) -> dict | None:
    """The metadata of a finished environment, or None. Refuses an
    environments directory the lab user does not own alone: whoever can
    write there can swap an environment every job of the run would import.
    `wait`: if a build of it is under way, wait for that build first."""
    envs, user = envs_dir(cluster), cluster.facts.lab_user
    q, meta = shlex.quote(envs), shlex.quote(f"{envs}/{name}/{META}")
    r = cluster.sh(f"mkdir -p {q} && chmod 755 {q} 2>/dev/null; stat -c '%U %a' {q} && "
                   f"cat {meta} 2>/dev/null || true")
    lines = r.out.splitlines()
    owner, mode = (lines[0].split() + ["", ""])[:2] if lines else ("", "")
    if r.rc != 0 or owner != user or not re.fullmatch(r"[0-7]*[0-5][0-5]", mode):
        raise MinihpcError(f"{envs} is owned by {owner or '?'} with mode {mode or '?'} (exit {r.rc}: "
                           f"{r.out.strip()[:200]})",
                           f"it must belong to {user} and be writable by nobody else: have its owner remove it")
    if len(lines) == 1 and wait:
        # Only now that the directory is known to be the lab user's alone is a file in it opened. A shared
        # lock waits out a build holding the exclusive one; no lock file means no build ever started.
        lock = shlex.quote(_lock(cluster, name))
        r = cluster.sh(f"if [ -f {lock} ]; then exec 9<{lock} && flock -s -w {LOCK_WAIT} 9 || true; fi; "
                       f"cat {meta} 2>/dev/null || true", timeout=LOCK_WAIT + 60)
        lines = ["", *r.out.splitlines()]
    try:
        return json.loads("\n".join(lines[1:])) if len(lines) > 1 else None
    except json.JSONDecodeError:
        return None


def pip_says(text: str, lines: list[str] | None = None) -> str:
    """pip's own ERROR lines (and, for a conflict, the first lines of its
    cause), with its references to our generated file put back as the
    requirement the user wrote."""
    out = text.splitlines()
    errors = [x.removeprefix("ERROR: ").strip() for x in out if x.startswith("ERROR:")]
    if "The conflict is caused by:" in out:
        i = out.index("The conflict is caused by:")
        errors.insert(1, "caused by: " + "; ".join(x.strip() for x in out[i + 1:i + 4] if x.strip()))
    said = "; ".join(errors)[:700] or text.strip()[-600:]
    if lines:
        said = re.sub(r"-r \S*download\.txt \(line (\d+)\)",
                      lambda m: lines[int(m.group(1)) - 1] if 0 < int(m.group(1)) <= len(lines) else m.group(0),
                      said)
    return said


def download(req: Requirements, b: Base, into: Path) -> None:
    """The host's pip resolves and downloads wheels for the login node's
    Python and platform; nothing on the cluster is touched yet. The files it
    reads are written here from checked lines only (checked again: no line
    can reach them unchecked), and wheels only: nothing is built on the host.
    The host's own pip configuration (index, proxy, CA) applies, as it should."""
    for x in (*req.lines, *req.constraints):
        requirement(x, req.source)
    (into / "constraints.txt").write_text("".join(f"{c}\n" for c in req.constraints))
    download = ["-c constraints.txt", *req.lines]
    (into / "download.txt").write_text("".join(f"{x}\n" for x in download))
    version = b.python.rsplit(".", 1)[0]
    (into / "wheels").mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", b.python,
            "--implementation", b.abi[:2], "--abi", b.abi, "--abi", "abi3", "--abi", "none",
            *(x for p in b.platforms for x in ("--platform", p)),
            "--dest", str(into / "wheels"), "-r", str(into / "download.txt")]
    r = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, cwd=into)
    if r.returncode == 0:
        return
    said = pip_says(r.stderr + r.stdout, download)
    if "No module named pip" in r.stderr:
        raise MinihpcError(f"the host's Python ({sys.executable}) has no pip",
                           "install it (apt-get install python3-pip) or run minihpc from a venv")
    m = re.search(r"satisf(?:y|ies) the requirement (\S+)", said) or re.search(r"Cannot install (.+?) because", said)
    what = f"{m.group(1)} cannot be had" if m else "the requirements cannot be resolved"
    raise BadInput(f"{what} for the cluster's Python {b.python} ({b.abi}, {b.platforms[0]}): pip: {said}",
                   f"check its name and version in {req.source}, and that it publishes wheels for Linux "
                   f"and Python {version} (the cluster installs wheels only, offline)")


def _install(cluster: Cluster, req: Requirements, b: Base, name: str, build: str, tmp: Path, t0: float,
             say) -> None:
    """Install offline on the login node from the wheels the host downloaded,
    in rounds (offline_rounds). The wheels go to this build's own staging
    directory; the environment is made under the lock (_build_script)."""
    envs = envs_dir(cluster)
    env, stage = f"{envs}/{name}", f"{envs}/.build-{name}-{build}"
    (tmp / "install.txt").write_text("".join(f"{x}\n" for x in ("-c constraints.txt", *req.lines)))
    (tmp / "requirements.txt").write_text("".join(f"{x}\n" for x in req.lines))
    script = _build_script(req, b, env, stage, _lock(cluster, name), build, t0)

    def attempt() -> Result:
        r = cluster.put(stage, [(tmp, ".", lambda rel: rel == "download.txt")], fresh=True)
        if r.rc != 0:
            raise MinihpcError(f"could not copy the wheels to {stage}: {r.out.strip()[:300]}",
                               "is the shared filesystem up? minihpc status")
        return cluster.sh(script, timeout=LOCK_WAIT + 1800)
    try:
        r = offline_rounds(cluster, req, b, tmp, attempt, say)
    finally:
        cluster.sh(f"rm -rf {shlex.quote(stage)}")
    if r.rc == LOCK_TIMEOUT:
        raise MinihpcError(f"another build of {name} held {_lock(cluster, name)} for {LOCK_WAIT} s",
                           "see what runs on the login node (minihpc env list shows it half-built), then run again")
    if r.rc != 0:
        raise MinihpcError(f"installing {req.source} on {cluster.facts.login} failed, and {env} was removed: pip: "
                           f"{pip_says(r.out)}", "fix the requirement pip names, then run again")


def offline_rounds(cluster: Cluster, req: Requirements, b: Base, tmp: Path, attempt: Callable[[], Result],
                   say) -> Result:
    """Run `attempt` (an install on the login node, offline, from the wheels
    in `tmp`) until it succeeds or fails for another reason than a missing
    wheel; its last result. The host's pip evaluates environment markers
    (`; python_version >= "3.12"`) for the host's own Python, so the login
    node's pip may need a package the host skipped: it names it, the host
    downloads it, and the install is tried again (a few rounds at most)."""
    for n in range(ROUNDS):
        r = attempt()
        missing = re.search(r"No matching distribution found for (\S+)", r.out) if r.rc != 0 else None
        if missing is None or n == ROUNDS - 1:
            return r
        # What the cluster says is not trusted: the name goes through the same check as the user's lines.
        try:
            need = requirement(missing.group(1), f"{cluster.facts.login}'s pip")
        except BadInput as e:
            raise MinihpcError(f"installing {req.source} failed, and the login node's pip asked for something "
                               f"that is not a plain requirement: {e.what}", "fix the requirements, then run again"
                               ) from None
        say(f"minihpc: the login node's pip also needs {need}, which the host's pip skipped (it reads "
            f"requirement markers for the host's Python): downloading it")
        download(Requirements(req.source, (need,), req.constraints), b, tmp)
    return r


def _build_script(req: Requirements, b: Base, env: str, stage: str, lock: str, build: str, t0: float) -> str:
    """Make the environment at its final path (a venv's path is written into
    its scripts, so it cannot be built elsewhere and renamed), holding the
    environment's lock from the check to the publication: the metadata is
    renamed in last, so a reader sees a finished environment or none."""
    site = f"{env}/{b.purelib_rel}"
    part = f"{env}/.{META}.part"
    meta = ("import json, subprocess, sys, time\n"
            "pip = lambda *a: subprocess.run([sys.executable, '-m', 'pip', 'freeze', *a], check=True,"
            " capture_output=True, text=True).stdout.split()\n"
            f"json.dump({{'name': {env.rsplit('/', 1)[1]!r}, 'source': {req.source!r}, 'made': time.strftime('%FT%T'),"
            f" 'seconds': round(time.time() - {t0}, 1), 'requirements': {list(req.lines)!r}, 'build': {build!r},"
            f" 'own': pip('--path', {site!r}), 'freeze': pip()}}, open({part!r}, 'w'), indent=1)\n")
    # Snakemake started from the environment's python: its jobs (sys.executable
    # and PATH, through sbatch --export=ALL) use the same.
    wrapper = f"#!{env}/bin/python\nimport sys\nfrom snakemake.cli import main\nsys.exit(main())\n"
    e, s, m = shlex.quote(env), shlex.quote(stage), shlex.quote(f"{env}/{META}")
    envs, name = env.rsplit("/", 1)
    return f"""set -euo pipefail
cd {s}
{_open_lock(lock)}
flock -w {LOCK_WAIT} 9 || {{ echo "minihpc: waited {LOCK_WAIT} s for another build of {name}"; exit {LOCK_TIMEOUT}; }}
if [ -f {m} ]; then exit 0; fi   # another run made it while this one waited
# Staging left by builds killed long ago (a live one's is minutes old).
find {shlex.quote(envs)} -maxdepth 1 -name {shlex.quote(f".build-{name}-*")} -mmin +1440 \\
  -exec chmod -R u+w {{}} + -exec rm -rf {{}} + 2>/dev/null || true
# On a failure before publication the environment goes: nothing half-built is left to be reused.
trap 'if [ $? -ne 0 ] && [ ! -f {m} ]; then chmod -R u+w {e} 2>/dev/null; rm -rf {e}; fi' EXIT
# No metadata under the lock: half-built by a build that was killed. Never a finished one.
chmod -R u+w {e} 2>/dev/null || true; rm -rf {e}
python3 -m venv --without-pip {e}
echo {shlex.quote(b.site_packages)} > {shlex.quote(site)}/_minihpc_cluster_env.pth
mkdir -p wheels
python3 -m pip --python {e}/bin/python install --no-index --find-links wheels --no-warn-script-location \\
  --disable-pip-version-check -q -r install.txt
printf %s {shlex.quote(wrapper)} > {e}/bin/snakemake && chmod 755 {e}/bin/snakemake
cp requirements.txt {e}/requirements.txt
{e}/bin/python - <<'META'
{meta}META
chmod -R a-w {e}
chmod u+w {e} && mv {shlex.quote(part)} {m} && chmod a-w {e}
"""


# -- list and remove -----------------------------------------------------------

def listing(cluster: Cluster) -> list[dict]:
    """Every environment: its metadata and size; half-built ones marked."""
    q = shlex.quote(envs_dir(cluster))
    probe = (f"cd {q} 2>/dev/null || exit 0; for d in {PREFIX}*/; do d=${{d%/}}; [ -d \"$d\" ] || continue; "
             f"echo \"@@ $d $(du -sm \"$d\" | cut -f1)\"; cat \"$d/{META}\" 2>/dev/null; echo; done")
    r = cluster.sh(probe)
    if r.rc != 0:
        raise MinihpcError(f"cannot list {envs_dir(cluster)}: {r.out.strip()[:300]}", "is the cluster up?")
    out = []
    for chunk in r.out.split("@@ ")[1:]:
        head, _, body = chunk.partition("\n")
        name, size = head.split()
        try:
            meta = json.loads(body)
        except json.JSONDecodeError:
            meta = {}
        out.append({"name": name, "size_mb": int(size), "complete": bool(meta), **meta})
    return out


def remove(cluster: Cluster, names: list[str], everything: bool) -> list[str]:
    """Remove environments (validated first: each must exist); never while
    the lab user has jobs queued or running, which may be using one, nor
    while a build of one is under way (its lock is taken first)."""
    present = {e["name"] for e in listing(cluster)}
    if everything:
        names = sorted(present)
    for n in names:
        if not ENV_NAME.fullmatch(n):
            raise BadInput(f"{n!r} is not an environment name", "names look like py-0123456789ab: minihpc env list")
        if n not in present:
            raise BadInput(f"no environment {n}", "see minihpc env list")
    queue = cluster.sh("squeue -h --me -o '%i %T'")
    if queue.rc != 0:
        raise MinihpcError(f"cannot ask SLURM for your jobs: {queue.out.strip()}", "is the cluster up?")
    if names and queue.out.strip():
        raise MinihpcError(f"{len(queue.out.splitlines())} of your job(s) are queued or running and may use it",
                           "wait for them or scancel them, then remove")
    q = shlex.quote(envs_dir(cluster))
    for n in names:
        r = cluster.sh(f"{_open_lock(_lock(cluster, n))}; flock -w 60 9 || {{ echo 'a build of it is under way'; "
                       f"exit 1; }}; chmod -R u+w {q}/{n} && rm -rf {q}/{n}")
        if r.rc != 0:
            raise MinihpcError(f"could not remove {n}: {r.out.strip()[:300]}", "see minihpc env list")
    return names
