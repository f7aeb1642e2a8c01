"""Modules an administrator adds to the site's tree: `minihpc modules add
NAME[/VERSION] --requirements FILE`.

The site's own modules are in the image (cluster/site_modules.py,
/opt/site/modulefiles). Added ones go to a tree of their own on a volume
every node mounts at /opt/site/local (docker-compose.yml: read-only on the
compute nodes), so a module added once is listed by `module avail` on every
node at once, as a site's software share is. They are root's and read-only
for every user.

A module is built as `minihpc run --requirements` builds an environment
(minihpc.pyenv): the host's pip downloads wheels for the login node's Python,
the login node installs them offline. Here as root, into a directory no user
can write, from wheels that never pass through a user's hands (streamed into
a root-only staging directory): a user who could swap one would run code in
every job of every user who loads the module. Loaded, a module puts only its
own packages on PYTHONPATH (those the cluster's Python environment does not
already have, in the versions asked for) and its commands on PATH.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from minihpc import pyenv
from minihpc.cluster import Cluster, Result
from minihpc.errors import BadInput, MinihpcError

SITE_TREE = "/opt/site/modulefiles"  # the image's (cluster/site_modules.py)
LOCAL = "/opt/site/local"  # the volume (docker-compose.yml); in MODULEPATH after the site's tree
LOCAL_TREE, LOCAL_SOFTWARE = f"{LOCAL}/modulefiles", f"{LOCAL}/software"
META = "minihpc-module.json"
# A name or version Lmod and a shell take as it is: no path, no glob, no shell or Lua syntax.
WORD = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"
SPEC = re.compile(rf"(?P<name>{WORD})(?:/(?P<version>{WORD}))?")
# pip freeze's lines for the module's own packages: what its help may quote.
FROZEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+")
LOCK_WAIT = 600
LOCK_TIMEOUT = pyenv.LOCK_TIMEOUT
EXISTS = 3  # the build script's exit code when the module appeared meanwhile


@dataclass(frozen=True)
class Spec:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


def parse(text: str, default_version: str | None = None) -> Spec:
    """NAME[/VERSION], checked: a missing version is `default_version`
    (today's date, for `add`), else refused."""
    m = SPEC.fullmatch(text)
    if m is None or ".." in text:
        raise BadInput(f"{text!r} is not a module name: a NAME or NAME/VERSION of letters, digits and . _ + - "
                       "(no path, no spaces, no shell characters)", "e.g. minihpc modules add mytools/1.0")
    version = m.group("version") or default_version
    if version is None:
        raise BadInput(f"{text}: which version?", f"give NAME/VERSION, e.g. {text}/1.0 (minihpc modules list)")
    return Spec(m.group("name"), version)


def _tree(cluster: Cluster, root: str) -> list[tuple[str, str]]:
    r = cluster.root(f"cd {root} 2>/dev/null || exit 0; for f in */*.lua; do [ -f \"$f\" ] && echo \"$f\"; done; "
                     "true")
    if r.rc != 0:
        raise MinihpcError(f"cannot read the module tree {root} on {cluster.facts.login}: {r.out.strip()[:300]}",
                           "is the cluster up? minihpc status")
    return sorted(tuple(line.removesuffix(".lua").split("/", 1)) for line in r.out.split()  # type: ignore[misc]
                  if line.endswith(".lua") and "/" in line)


def listing(cluster: Cluster) -> list[dict]:
    """Every module: the site's and the added ones (with what each holds)."""
    site = [{"module": f"{n}/{v}", "tree": "site"} for n, v in _tree(cluster, SITE_TREE)]
    r = cluster.root(f"cd {LOCAL_SOFTWARE} 2>/dev/null || exit 0; for m in */*/{META}; do [ -f \"$m\" ] && "
                     "{ echo; cat \"$m\"; echo; echo @@; }; done; true")
    metas = {}
    for chunk in r.out.split("@@"):
        try:
            meta = json.loads(chunk)
            metas[meta["module"]] = meta
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    added = [{"module": f"{n}/{v}", "tree": "added", **metas.get(f"{n}/{v}", {})}
             for n, v in _tree(cluster, LOCAL_TREE)]
    return site + added


def check(text: str, requirements_file: str) -> tuple[Spec, pyenv.Requirements]:
    """What `add` is given, checked before any cluster is asked."""
    spec = parse(text, default_version=time.strftime("%Y.%m.%d"))
    path = Path(requirements_file)
    if not path.is_file():
        raise BadInput(f"--requirements {requirements_file}: no such file", "give a pip requirements file")
    # Its includes (-r/-c) may name only files beside it or below.
    req = pyenv.requirements(path.resolve().parent, [str(path.resolve())], [], none=False)
    assert req is not None  # a named file is always read (or refused)
    return spec, req


def add(cluster: Cluster, spec: Spec, req: pyenv.Requirements, say=print) -> dict:
    """Build module `spec` from `req` (check()); what it holds."""
    site = {n for n, _ in _tree(cluster, SITE_TREE)}
    if spec.name in site:
        raise BadInput(f"{spec.name} is one of the site's own modules (module spider {spec.name})",
                       "give the module another name: added modules never shadow the site's")
    if (spec.name, spec.version) in _tree(cluster, LOCAL_TREE):
        raise BadInput(f"module {spec} is already there", f"give another version, or remove it first: "
                                                          f"minihpc modules remove {spec}")
    b = pyenv.base(cluster)
    say(f"minihpc: making module {spec} from {req.source}: the host's pip downloads the wheels for Python "
        f"{b.python} ({b.abi}, {b.platforms[0]}), the login node installs them offline, as root")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="minihpc-module-") as tmp:
        where = Path(tmp)
        pyenv.download(req, b, where)
        (where / "requirements.txt").write_text("".join(f"{x}\n" for x in req.lines))
        script = build_script(spec, req, b, t0)

        def attempt() -> Result:
            return cluster.sh(script, user="root", stdin=_wheels(where), timeout=LOCK_WAIT + 1800)
        r = pyenv.offline_rounds(cluster, req, b, where, attempt, say)
    if r.rc == EXISTS:
        raise BadInput(f"module {spec} was added by someone else meanwhile", "minihpc modules list")
    if r.rc == LOCK_TIMEOUT:
        raise MinihpcError(f"another `minihpc modules` held the tree's lock for {LOCK_WAIT} s",
                           "see what runs on the login node, then try again")
    if r.rc != 0:
        raise MinihpcError(f"installing {req.source} as module {spec} failed, and nothing of it was left: pip: "
                           f"{pyenv.pip_says(r.out)}", "fix the requirement pip names, then try again")
    meta = next((m for m in listing(cluster) if m["module"] == str(spec)), None)
    if meta is None or "packages" not in meta:
        raise MinihpcError(f"module {spec} was built but is not in {LOCAL_TREE}", "minihpc modules list")
    return meta


def _open_lock() -> str:
    """Shell that opens the tree's lock on descriptor 9, root's alone: a user
    who could open it could flock it and stall every `modules add`."""
    return f'old=$(umask); umask 077; exec 9>>{LOCAL}/.lock; umask "$old"; chmod 600 {LOCAL}/.lock'


def _wheels(where: Path) -> bytes:
    """The staging files as a tar stream: wheels and the two lists, nothing else."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("wheels", "constraints.txt", "requirements.txt"):
            tar.add(where / name, arcname=name)
    return buf.getvalue()


def modulefile(spec: Spec, prefix: str, site_packages: str, listed: str, source: str) -> str:
    """The module's Lua: what `module help/whatis` say, and the two paths it sets."""
    return (f'help([==[\n{spec}: Python packages added with minihpc modules add ({source}).\n'
            f'Packages: {listed}\n]==])\n'
            f'whatis("Name: {spec.name}")\nwhatis("Version: {spec.version}")\n'
            f'whatis("Description: Python packages added by the site: {listed}")\n'
            f'prepend_path("PYTHONPATH", "{site_packages}")\n'
            f'prepend_path("PATH", "{prefix}/commands")\n')


def build_script(spec: Spec, req: pyenv.Requirements, b: pyenv.Base, t0: float) -> str:
    """Run as root on the login node, the staging tar on stdin: make the
    module's environment at its final path (a venv's path is in its scripts),
    its modulefile last (renamed in: a module is listed whole or not at all),
    all under the tree's lock; on any failure nothing of it is left."""
    prefix = f"{LOCAL_SOFTWARE}/{spec.name}/{spec.version}"
    site = f"{prefix}/{b.purelib_rel}"
    lua = f"{LOCAL_TREE}/{spec.name}/{spec.version}.lua"
    source = re.sub(r"[^\w.,/ -]", "_", Path(req.source).name if "/" in req.source else req.source)[:200]
    # Its metadata and Lua from pip's own freeze of what the module holds (only plain NAME==VERSION lines).
    write = (
        "import json, re, subprocess, sys, time\n"
        f"own = subprocess.run([sys.executable, '-m', 'pip', '--python', {prefix + '/bin/python'!r}, 'freeze',"
        f" '--path', {site!r}], check=True, capture_output=True, text=True).stdout.split()\n"
        f"own = [x for x in own if re.fullmatch({FROZEN.pattern!r}, x)]\n"
        f"meta = {{'module': {str(spec)!r}, 'made': time.strftime('%FT%T'), 'seconds': round(time.time() - {t0}, 1),"
        f" 'source': {source!r}, 'requirements': {list(req.lines)!r}, 'packages': own, 'prefix': {prefix!r}}}\n"
        f"json.dump(meta, open({prefix + '/' + META!r}, 'w'), indent=1)\n"
        f"lua = {modulefile(spec, prefix, site, '@@PACKAGES@@', source)!r}\n"
        f"listed = ', '.join(own) or \"none beyond the cluster's\"\n"
        f"open({lua + '.part'!r}, 'w').write(lua.replace('@@PACKAGES@@', listed))\n"
    )
    p, t, q_lua = shlex.quote(prefix), shlex.quote(f"{LOCAL_TREE}/{spec.name}"), shlex.quote(lua)
    return f"""set -euo pipefail
umask 022
install -d -m 0755 {LOCAL_TREE} {LOCAL_SOFTWARE}
{_open_lock()}
flock -w {LOCK_WAIT} 9 || {{ echo "minihpc: waited {LOCK_WAIT} s for the module tree's lock"; exit {LOCK_TIMEOUT}; }}
[ ! -e {q_lua} ] || exit {EXISTS}
stage=$(mktemp -d /root/.minihpc-module.XXXXXX)
trap 'rc=$?; rm -rf "$stage"; if [ $rc -ne 0 ]; then rm -rf {p} {q_lua}.part; fi' EXIT
tar -x -C "$stage" --no-same-owner --no-same-permissions
# No modulefile: what is there was left by a build that was killed.
rm -rf {p}
install -d -m 0755 {t} "$(dirname {p})"
python3 -m venv --without-pip {p}
# pip sees the cluster's packages (the .pth), so the module holds only what they lack; loaded, the
# module puts its own site-packages on PYTHONPATH, where .pth files are not read.
echo {shlex.quote(b.site_packages)} > {shlex.quote(site)}/_minihpc_cluster_env.pth
python3 -m pip --python {p}/bin/python install --no-index --find-links "$stage/wheels" --no-warn-script-location \\
  --disable-pip-version-check -q -c "$stage/constraints.txt" -r "$stage/requirements.txt"
# The packages' commands, without the venv's own python and activate scripts.
install -d -m 0755 {p}/commands
for f in {p}/bin/*; do
  case "${{f##*/}}" in python*|activate*|Activate*|pip*|deactivate*) ;;
    *) ln -s "../bin/${{f##*/}}" {p}/commands/ ;;
  esac
done
python3 - <<'WRITE'
{write}WRITE
chmod -R a+rX,go-w {p} {q_lua}.part
mv {q_lua}.part {q_lua}
"""


def remove(cluster: Cluster, spec: Spec) -> Spec:
    """Remove an added module (never one of the site's), under the tree's lock."""
    if (spec.name, spec.version) in _tree(cluster, SITE_TREE):
        raise BadInput(f"{spec} is one of the site's own modules", "only modules added with minihpc modules add "
                                                                   "can be removed")
    if (spec.name, spec.version) not in _tree(cluster, LOCAL_TREE):
        raise BadInput(f"no added module {spec}", "see minihpc modules list")
    lua = shlex.quote(f"{LOCAL_TREE}/{spec.name}/{spec.version}.lua")
    p = shlex.quote(f"{LOCAL_SOFTWARE}/{spec.name}/{spec.version}")
    # The modulefile first: from then on nobody loads it, and a half-removed module is not listed.
    r = cluster.root(f"{_open_lock()}; flock -w 60 9 || {{ echo 'the module tree is locked'; exit 1; }}; "
                     f"rm -f {lua} && rm -rf {p} && rmdir --ignore-fail-on-non-empty "
                     f"{shlex.quote(f'{LOCAL_TREE}/{spec.name}')} {shlex.quote(f'{LOCAL_SOFTWARE}/{spec.name}')}")
    if r.rc != 0:
        raise MinihpcError(f"could not remove {spec}: {r.out.strip()[:300]}", "see minihpc modules list")
    return spec
