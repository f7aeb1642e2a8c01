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
under it, reused while neither changes, and read-only once made; a build
that fails is removed, so nothing half-built is ever reused.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from minihpc.cluster import Cluster
from minihpc.errors import BadInput, MinihpcError

DEFAULT_FILE = "requirements.txt"  # picked up at a workflow's root
PREFIX = "py-"
META = "minihpc-env.json"  # written last: an environment without it is half-built
ROUNDS = 4  # installs tried, each after downloading what the last one missed
ENV_NAME = re.compile(r"py-[0-9a-f]{12}")
PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?\s*([<>=!~;@].*)?")
INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)[ =]\s*(\S+)$")
EDITABLE = re.compile(r"^(-e|--editable)\b")

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
    """What a workflow asks for, flattened: requirement lines, constraint
    lines and pip option lines (an index, --pre) from the files and -r/-c
    files they include."""

    source: str  # for people: "requirements.txt at the workflow's root", "--pip ujson"
    lines: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


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
    a requirements.txt at the workflow's root; None for none."""
    if none and (files or pip):
        raise BadInput("--no-requirements with --requirements or --pip", "give one or the other")
    if none:
        return None
    for pkg in pip:
        if not PACKAGE.fullmatch(pkg.strip()):
            raise BadInput(f"--pip {pkg!r} is not a package requirement",
                           "give names with optional versions, e.g. --pip numpy 'matplotlib>=3.8'")
    paths = []
    for f in files:
        p = Path(f)
        candidates = [p] if p.is_absolute() else [Path.cwd() / p, workflow / p]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise BadInput(f"--requirements {f}: no such file (looked in {' and '.join(map(str, candidates))})",
                           "give a pip requirements file, e.g. --requirements requirements.txt")
        paths.append(found.resolve())
    default = workflow / DEFAULT_FILE
    if not files and not pip and default.is_file():
        paths, source = [default], f"{DEFAULT_FILE} at the workflow's root"
    elif not files and not pip:
        return None
    else:
        source = ", ".join([*(str(p) for p in paths), *([f"--pip {' '.join(pip)}"] if pip else [])])
    lines: list[str] = [x.strip() for x in pip]
    constraints: list[str] = []
    options: list[str] = []
    for p in paths:
        _flatten(p, lines, constraints, options, seen=set())
    if not lines:
        raise BadInput(f"{source} lists no packages", "add requirement lines, or run with --no-requirements")
    return Requirements(source, tuple(lines), tuple(constraints), tuple(options))


def _flatten(path: Path, lines: list[str], constraints: list[str], options: list[str], seen: set[Path],
             into: list[str] | None = None) -> None:
    if path in seen:
        return
    seen.add(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read requirements file {path}: {e}", "give a readable text file") from None
    into = lines if into is None else into
    for n, raw in enumerate(text.replace("\\\n", " ").splitlines(), 1):
        line = " ".join(re.sub(r"(^|\s)#.*$", "", raw).split())
        if not line:
            continue
        if EDITABLE.match(line):
            raise BadInput(f"{path}:{n}: {line!r} is an editable install, which the cluster cannot build offline",
                           "list the package by name and version, or build a wheel and publish it to your index")
        m = INCLUDE.match(line)
        if m:
            target = (path.parent / m.group(2)).resolve()
            if not target.is_file():
                raise BadInput(f"{path}:{n}: {m.group(2)} not found (looked for {target})",
                               "fix the -r/-c line or remove it")
            kind = constraints if m.group(1) in ("-c", "--constraint") else into
            _flatten(target, lines, constraints, options, seen, kind)
        elif line.startswith("-"):
            options.append(line)  # --index-url, --pre, ...: pip's, for the download
        else:
            into.append(line)


# -- environments on the shared filesystem -------------------------------------------

def envs_dir(cluster: Cluster) -> str:
    return f"{cluster.facts.shared}/.envs"


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
    material = json.dumps([req.lines, req.constraints, req.options, b.python, b.abi, b.platforms[:1],
                           sorted(b.freeze)])
    return PREFIX + hashlib.sha256(material.encode()).hexdigest()[:12]


def provide(cluster: Cluster, req: Requirements, say=print) -> Env:
    """The environment for `req`: reused if made before, else made (wheels
    downloaded by the host's pip, installed offline on the login node)."""
    b = base(cluster)
    name = name_of(req, b)
    path = f"{envs_dir(cluster)}/{name}"
    existing = _check_dir_and_read(cluster, name)
    if existing is not None:
        say(f"minihpc: reusing Python environment {name} (made {existing['made']} in {existing['seconds']} s, "
            f"{len(existing['own'])} package(s) over the cluster's) for {req.source}")
        return Env(name, path, req.source, True, existing["made"], existing["seconds"], existing["own"],
                   existing["freeze"])
    say(f"minihpc: making Python environment {name} for {req.source}: the host's pip downloads the wheels "
        f"for Python {b.python} ({b.abi}, {b.platforms[0]}), the login node installs them offline")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="minihpc-wheels-") as tmp:
        _download(req, b, Path(tmp))
        _install(cluster, req, b, name, Path(tmp), t0, say)
    meta = _check_dir_and_read(cluster, name)
    if meta is None:
        raise MinihpcError(f"environment {name} was installed but {META} is missing", f"remove it: minihpc env "
                           f"remove {name}, and run again")
    say(f"minihpc: made {name} in {meta['seconds']} s: {', '.join(meta['own']) or 'nothing beyond the cluster'}")
    return Env(name, path, req.source, False, meta["made"], meta["seconds"], meta["own"], meta["freeze"])


def cluster_own(cluster: Cluster) -> Env:
    """The cluster's own environment, for the report of a run without requirements."""
    b = base(cluster)
    return Env("the cluster's own", b.prefix, "no requirements", freeze=b.freeze)


def _check_dir_and_read(cluster: Cluster, name: str) -> dict | None:
    """The metadata of a finished environment, or None. Refuses an
    environments directory the lab user does not own alone: whoever can
    write there can swap an environment every job of the run would import."""
    envs, user = envs_dir(cluster), cluster.facts.lab_user
    q = shlex.quote(envs)
    r = cluster.sh(f"mkdir -p {q} && chmod 755 {q} 2>/dev/null; stat -c '%U %a' {q} && "
                   f"cat {q}/{name}/{META} 2>/dev/null || true")
    lines = r.out.splitlines()
    owner, mode = (lines[0].split() + ["", ""])[:2] if lines else ("", "")
    if r.rc != 0 or owner != user or not re.fullmatch(r"[0-7]*[0-5][0-5]", mode):
        raise MinihpcError(f"{envs} is owned by {owner or '?'} with mode {mode or '?'} (exit {r.rc}: "
                           f"{r.out.strip()[:200]})",
                           f"it must belong to {user} and be writable by nobody else: have its owner remove it")
    try:
        return json.loads("\n".join(lines[1:])) if len(lines) > 1 else None
    except json.JSONDecodeError:
        return None


def _pip_says(text: str, lines: list[str] | None = None) -> str:
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
        said = re.sub(r"-r \S*download\.txt \(line (\d+)\)", lambda m: lines[int(m.group(1)) - 1], said)
    return said


def _download(req: Requirements, b: Base, into: Path) -> None:
    """The host's pip resolves and downloads wheels for the login node's
    Python and platform; nothing on the cluster is touched yet."""
    (into / "constraints.txt").write_text("".join(f"{c}\n" for c in req.constraints))
    download = [*req.options, "-c constraints.txt", *req.lines]
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
    said = _pip_says(r.stderr + r.stdout, download)
    if "No module named pip" in r.stderr:
        raise MinihpcError(f"the host's Python ({sys.executable}) has no pip",
                           "install it (apt-get install python3-pip) or run minihpc from a venv")
    m = re.search(r"satisf(?:y|ies) the requirement (\S+)", said) or re.search(r"Cannot install (.+?) because", said)
    what = f"{m.group(1)} cannot be had" if m else "the requirements cannot be resolved"
    raise BadInput(f"{what} for the cluster's Python {b.python} ({b.abi}, {b.platforms[0]}): pip: {said}",
                   f"check its name and version in {req.source}, and that it publishes wheels for Linux "
                   f"and Python {version} (the cluster installs wheels only, offline)")


def _install(cluster: Cluster, req: Requirements, b: Base, name: str, tmp: Path, t0: float, say) -> None:
    """Install offline on the login node from the wheels the host downloaded.
    The host's pip evaluates environment markers (`; python_version >= "3.12"`)
    for the host's own Python, so the login node's pip may need a package the
    host skipped: it names it, the host downloads it, and the install is tried
    again (a few rounds at most)."""
    envs = envs_dir(cluster)
    env, stage = f"{envs}/{name}", f"{envs}/.wheels-{name}"
    (tmp / "install.txt").write_text("".join(f"{x}\n" for x in ("-c constraints.txt", *req.lines)))
    (tmp / "requirements.txt").write_text("".join(f"{x}\n" for x in req.lines))
    script = _build_script(req, b, env, stage, t0)
    try:
        for attempt in range(ROUNDS):
            r = cluster.put(stage, [(tmp, ".", lambda rel: rel == "download.txt")], fresh=True)
            if r.rc != 0:
                raise MinihpcError(f"could not copy the wheels to {stage}: {r.out.strip()[:300]}",
                                   "is the shared filesystem up? minihpc status")
            r = cluster.sh(script, timeout=1800)
            if r.rc == 0:
                return
            missing = re.search(r"No matching distribution found for (\S+)", r.out)
            if missing is None or attempt == ROUNDS - 1:
                raise MinihpcError(f"installing {req.source} on {cluster.facts.login} failed, and {env} was "
                                   f"removed: pip: {_pip_says(r.out)}", "fix the requirement pip names, then run again")
            need = missing.group(1)
            say(f"minihpc: the login node's pip also needs {need}, which the host's pip skipped (it reads "
                f"requirement markers for the host's Python): downloading it")
            _download(Requirements(req.source, (need,), req.constraints, req.options), b, tmp)
    finally:
        cluster.sh(f"rm -rf {shlex.quote(stage)}")


def _build_script(req: Requirements, b: Base, env: str, stage: str, t0: float) -> str:
    site = f"{env}/{b.purelib_rel}"
    meta = ("import json, subprocess, sys, time\n"
            "pip = lambda *a: subprocess.run([sys.executable, '-m', 'pip', 'freeze', *a], check=True,"
            " capture_output=True, text=True).stdout.split()\n"
            f"json.dump({{'name': {env.rsplit('/', 1)[1]!r}, 'source': {req.source!r}, 'made': time.strftime('%FT%T'),"
            f" 'seconds': round(time.time() - {t0}, 1), 'requirements': {list(req.lines)!r},"
            f" 'own': pip('--path', {site!r}), 'freeze': pip()}}, open({f'{env}/{META}'!r}, 'w'), indent=1)\n")
    # Snakemake started from the environment's python: its jobs (sys.executable
    # and PATH, through sbatch --export=ALL) use the same.
    wrapper = f"#!{env}/bin/python\nimport sys\nfrom snakemake.cli import main\nsys.exit(main())\n"
    e, s = shlex.quote(env), shlex.quote(stage)
    return f"""set -euo pipefail
cd {s}
# On any failure the environment goes: nothing half-built is left to be reused.
trap 'if [ $? -ne 0 ]; then chmod -R u+w {e} 2>/dev/null; rm -rf {e}; fi' EXIT
chmod -R u+w {e} 2>/dev/null || true; rm -rf {e}   # left by a build that was killed
python3 -m venv --without-pip {e}
echo {shlex.quote(b.site_packages)} > {shlex.quote(site)}/_minihpc_cluster_env.pth
mkdir -p wheels
python3 -m pip --python {e}/bin/python install --no-index --find-links wheels --no-warn-script-location \
  --disable-pip-version-check -q -r install.txt
printf %s {shlex.quote(wrapper)} > {e}/bin/snakemake && chmod 755 {e}/bin/snakemake
cp requirements.txt {e}/requirements.txt
{e}/bin/python - <<'META'
{meta}META
chmod -R a-w {e}
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
    the lab user has jobs queued or running, which may be using one."""
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
        r = cluster.sh(f"chmod -R u+w {q}/{n} && rm -rf {q}/{n}")
        if r.rc != 0:
            raise MinihpcError(f"could not remove {n}: {r.out.strip()[:300]}", "see minihpc env list")
    return names
