"""How the cluster client reaches a node: one small interface, two ways.
Only this module knows that minihpc's nodes are Compose services in Docker
containers (Containers, which is also the one client for Compose and docker
on them). A real site is reached over SSH, as its ordinary user (SshTransport)."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol

from minihpc import NAME, ROOT, RUN_DIR
from minihpc.errors import MinihpcError

if TYPE_CHECKING:
    from minihpc.sitefile import Site

# `docker compose` with this cluster's name, files and run directory (given on
# the command itself: importing minihpc sets nothing in the environment).
_COMPOSE = ["/usr/bin/env", f"MINIHPC_CLUSTER={NAME}", f"MINIHPC_RUN_DIR={RUN_DIR}", str(ROOT / "cluster/compose.sh")]


# Every command minihpc runs on a node gets a known environment: nothing
# inherited (env -i), no dotfiles of the user (--noprofile --norc; a workflow's
# rule can write ~/.profile and ~/.bashrc, and would then control what every
# later command prints), only the system's /etc/profile, which root owns.
CLEAN_SHELL = ("env", "-i", "/bin/bash", "--noprofile", "--norc", "-c")
CLEAN_PRELUDE = ('HOME=$(getent passwd "$(id -u)" | cut -d: -f6); LANG=C.UTF-8; export HOME LANG; '
                 '. /etc/profile\n')


def clean_shell(script: str) -> list[str]:
    """The argv that runs `script` in bash with a known environment and no dotfiles."""
    return [*CLEAN_SHELL, CLEAN_PRELUDE + script]


class Transport(Protocol):
    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        """The argv that runs `script` in bash with a known environment and
        none of the user's dotfiles (clean_shell) on `node` as `user` (in
        `workdir` if given), with standard input passed through. The caller
        says `done(argv)` once that command has ended."""
        ...

    def done(self, argv: list[str]) -> None:
        """A command `command` gave has ended."""
        ...


def container_name(service: str) -> str:
    """The container Compose makes for a service of this cluster (<project>-<service>-1)."""
    return f"{NAME}-{service}-1"


class SshTransport:
    """A site: `ssh` to its login node as the site's user, host key checked
    strictly, never a prompt. A compute node is reached from the login node
    by a job step of the user's own (`srun --nodelist=NODE`, in the site's
    partition and account, with the site file's small limits): no root, no
    other user, no docker. One SSH connection is shared by every command
    (ControlMaster) until `close()`: a few of them, each command on the one
    with the fewest commands open, because sshd allows MaxSessions (10 by
    default) on one and the site check's proofs side by side hold more."""

    CONNECTIONS = 3
    PERSIST_S = 60  # ControlPersist: how long a connection outlives its last command

    def __init__(self, site: Site, login: str) -> None:
        self.site, self.login = site, login
        self._control = Path(tempfile.mkdtemp(prefix="minihpc-ssh-"))
        self._stopped = False
        self._open = [0] * self.CONNECTIONS
        self._last = [-math.inf] * self.CONNECTIONS  # when each last had a command end (monotonic)
        self._lock = threading.Lock()
        self._ready = [threading.Event() for _ in range(self.CONNECTIONS)]
        for ready in self._ready:
            ready.set()

    def _ensure(self, connection: int, opening: threading.Event | None, ready: threading.Event) -> None:
        """The connection up before a command uses it. ssh's ControlMaster=auto
        lets commands that start together on a closed connection race to open
        it, and the losers print "ControlSocket ... already exists" among their
        output: so one command opens it (`opening`), alone, and the others wait."""
        if opening is None:
            ready.wait(60)
            return
        try:
            argv = self.ssh(connection=connection)
            subprocess.run([*argv, "true"], capture_output=True, check=False, stdin=subprocess.DEVNULL,
                           timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass  # not opened: the command itself then fails, with ssh's own words
        finally:
            with self._lock:
                self._last[connection] = time.monotonic()
            opening.set()

    def _path(self, connection: int) -> str:
        return f"ControlPath={self._control}/{connection}-%C"

    def ssh(self, interactive: bool = False, connection: int = 0) -> list[str]:
        """ssh's argv up to the destination: strict host keys, never a prompt
        (unless `interactive`: a person at a terminal, on their own connection)."""
        s = self.site
        argv = ["ssh", "-p", str(s.port), *self._checks(interactive)]
        if not interactive:
            argv += ["-o", "ControlMaster=auto", "-o", self._path(connection), "-o",
                     f"ControlPersist={self.PERSIST_S}"]
        if s.jump:
            # Not -J: its ssh to the jump host gets none of the options above
            # (known_hosts, identity, BatchMode). The jump's own ssh is given them.
            juser, jhost, jport = s.jump_parts()
            jump = ["ssh", "-p", str(jport), *self._checks(interactive), "-W"]
            dest = f"{juser}@{jhost}" if juser else jhost
            # ssh runs a ProxyCommand through a shell and expands %-tokens in it.
            quoted = " ".join(shlex.quote(a).replace("%", "%%") for a in jump)
            argv += ["-o", f"ProxyCommand={quoted} %h:%p {shlex.quote(dest).replace('%', '%%')}"]
        return [*argv, f"{s.user}@{s.host}"]

    def _checks(self, interactive: bool) -> list[str]:
        """What every connection, to the site or its jump host, is held to:
        the host key checked strictly against the site's known_hosts, the
        site's key only, and no prompt unless a person is at a terminal."""
        s = self.site
        argv = ["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
        argv += [] if interactive else ["-o", "BatchMode=yes"]
        if s.identity:
            argv += ["-i", str(s.identity), "-o", "IdentitiesOnly=yes"]
        if s.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={s.known_hosts}"]
        return argv

    def stop(self) -> None:
        """Refuse every later command: what was interrupted starts nothing more on the site."""
        self._stopped = True

    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        s = self.site
        if self._stopped:
            raise MinihpcError("interrupted: no more commands on the site", "run the check again")
        if user != s.user:
            raise MinihpcError(f"on a site, commands run as {s.user}, the site file's user (asked for {user})",
                               "this proof needs root or another user: it runs on minihpc only")
        body = f"cd {shlex.quote(workdir)} && {script}" if workdir else script
        setup = f"{s.setup}\n" if s.setup else ""
        if node != self.login:
            step = " ".join(shlex.quote(o) for o in s.sbatch_options())
            body = (f"srun --quiet --nodelist={shlex.quote(node)} --nodes=1 --ntasks=1 {step} "
                    f"/bin/bash --noprofile --norc -c {shlex.quote(setup + body)}")  # keeps the step's SLURM_*
        with self._lock:
            connection = min(range(self.CONNECTIONS), key=self._open.__getitem__)
            self._open[connection] += 1
            opening = None
            # Alone on it, and idle long enough for its master to have gone: open it first.
            if self._open[connection] == 1 and time.monotonic() - self._last[connection] > self.PERSIST_S - 10:
                opening = self._ready[connection] = threading.Event()
            ready = self._ready[connection]
        self._ensure(connection, opening, ready)
        # sshd hands the command to the user's own shell; what it runs is the clean one.
        return [*self.ssh(connection=connection), shlex.join(clean_shell(setup + body))]

    def done(self, argv: list[str]) -> None:
        with self._lock:
            for connection in range(self.CONNECTIONS):
                if self._path(connection) in argv:
                    self._open[connection] = max(0, self._open[connection] - 1)
                    self._last[connection] = time.monotonic()

    def close(self) -> None:
        """End the shared connections (they would otherwise linger ControlPersist seconds)."""
        for connection in range(self.CONNECTIONS):
            argv = self.ssh(connection=connection)
            subprocess.run([*argv[:-1], "-O", "exit", argv[-1]], capture_output=True, check=False,
                           stdin=subprocess.DEVNULL, timeout=30)


class Containers:
    """The local cluster's containers, and the one client minihpc has for
    them: every Compose and docker command on this cluster goes through here
    (the verbs, bring-up, the readiness polls, the faults, the tests).

    As a Transport it enters a node with `docker exec` into the container
    Compose names <project>-<service>-1, and so do `exec` and the polls: not
    `docker compose exec`, which reads the project's files on every call
    (about 0.12 s of CPU against 0.01; the tests, the lab and every readiness
    poll make thousands of calls).

    Two kinds of call: checked ones (`compose`, `docker`, `id`, `networks`)
    raise MinihpcError with Docker's own words; polls (`exec`, `ps`,
    `inspect`, `engine_answers`, `running`, `have_images`) expect to fail now
    and then (a service still starting, an engine restarting) and return the
    result, never an error."""

    # -- as a Transport ------------------------------------------------------

    def command(self, node: str, script: str, user: str, workdir: str | None = None) -> list[str]:
        where = ["-w", workdir] if workdir else []
        return ["docker", "exec", "-i", "-u", user, *where, container_name(node), *clean_shell(script)]

    def done(self, argv: list[str]) -> None:
        pass

    # -- polls ---------------------------------------------------------------

    def exec(self, service: str, *argv: str, user: str | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`argv` (no shell) in a service's container, as `user` (root if
        None); exit 124 if it outlasts `timeout`. docker's timeout ends the
        client only: a command that may hang should carry its own `timeout`."""
        return _poll(["docker", "exec", *(["-u", user] if user else []), container_name(service), *argv], timeout)

    def ps(self, fmt: str, *filters: str) -> subprocess.CompletedProcess[str]:
        """`docker ps` of this cluster's containers, running or stopped (and
        matching each `--filter` value in `filters`), one `fmt` line each."""
        where = [a for f in (f"label=com.docker.compose.project={NAME}", *filters) for a in ("--filter", f)]
        return _poll(["docker", "ps", "--all", *where, "--format", fmt], 30)

    def inspect(self, fmt: str, *names: str) -> subprocess.CompletedProcess[str]:
        """`docker inspect --format fmt` of containers or images."""
        return _poll(["docker", "inspect", "--format", fmt, *names], 30)

    def engine_answers(self) -> bool:
        return _poll(["docker", "info"], 30).returncode == 0

    def running(self, service: str) -> bool:
        """Whether the service's container is running."""
        return bool(self.ps("{{.ID}}", f"name=^{container_name(service)}$", "status=running").stdout.strip())

    def clusters(self, stopped: bool = True) -> list[str]:
        """The names of the minihpc clusters on this engine, this one's too
        (with `stopped`, those whose containers are all stopped as well): the
        Compose projects whose containers run minihpc's images."""
        r = _poll(["docker", "ps", *(["--all"] if stopped else []), "--filter", "label=com.docker.compose.project",
                   "--format",
                   '{{.Label "com.docker.compose.project"}} {{.Image}}'], 30)
        rows = (line.split() for line in r.stdout.splitlines() if r.returncode == 0)
        return sorted({row[0] for row in rows if len(row) == 2 and row[1].startswith("minihpc/")})

    def publishing(self, port: int) -> list[str]:
        """The containers on this engine, of any cluster or none, that publish
        `port` on the host (running ones: a stopped one holds no port)."""
        r = _poll(["docker", "ps", "--filter", f"publish={port}", "--format", "{{.Names}}"], 30)
        return r.stdout.split() if r.returncode == 0 else []

    def have_images(self, *refs: str) -> bool:
        return _poll(["docker", "image", "inspect", *refs], 30).returncode == 0

    def host_networks(self) -> list[dict] | None:
        """Every Docker network on the host, this cluster's or not, as
        `docker network inspect` gives them; None when the engine does not answer."""
        ls = _poll(["docker", "network", "ls", "-q"], 30)
        if ls.returncode != 0 or not ls.stdout.split():
            return None if ls.returncode != 0 else []
        r = _poll(["docker", "network", "inspect", *ls.stdout.split()], 30)
        return json.loads(r.stdout) if r.returncode == 0 else None

    # -- checked -------------------------------------------------------------

    def compose(self, *args: str, timeout: float = 120) -> str:
        """`docker compose ARGS` on this cluster; its output, or an error with Compose's own message."""
        return _run([*_COMPOSE, *args], f"docker compose {' '.join(args)}", timeout)

    def compose_shown(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
                      run_dir: Path | None = None) -> int:
        """`docker compose ARGS` with its output on the terminal (progress a
        user watches, or what they asked to see); its exit code, or, if
        `check`, an error naming the command when it failed. `run_dir`: files
        rendered elsewhere than this cluster's (minihpc build's own)."""
        cmd = _COMPOSE if run_dir is None else [*_COMPOSE[:2], f"MINIHPC_RUN_DIR={run_dir}", _COMPOSE[-1]]
        rc = subprocess.run([*cmd, *args], env=env, stdin=subprocess.DEVNULL, check=False).returncode
        if check and rc != 0:
            raise MinihpcError(f"docker compose {args[0]} exited {rc}", "its lines above say why")
        return rc

    def compose_replace(self, *args: str) -> NoReturn:
        """Become `docker compose ARGS` (interactive verbs: a shell, following logs)."""
        os.execv(_COMPOSE[0], [*_COMPOSE, *args])

    def docker(self, *args: str, timeout: float = 120) -> str:
        return _run(["docker", *args], f"docker {' '.join(args)}", timeout)

    def logs(self, service: str, tail: int | None = None, since: str | None = None, prefix: bool = True,
             timeout: float = 30) -> str:
        """A service's container log (what `minihpc logs SERVICE` shows)."""
        args = [*(["--tail", str(tail)] if tail is not None else []), *(["--since", since] if since else []),
                *([] if prefix else ["--no-log-prefix"])]
        return self.compose("logs", "--no-color", *args, service, timeout=timeout)

    def id(self, service: str) -> str:
        """The id of a service's container, running or not."""
        cid = self.compose("ps", "-q", "--all", service).strip()
        if not cid:
            raise MinihpcError(f"{service} has no container", "bring the cluster up first: minihpc up")
        return cid

    def networks(self, cid: str) -> list[str]:
        """The networks a container is attached to (none once it is cut off)."""
        return list(json.loads(self.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", cid)))


# The one local client (it holds no state: one instance serves everyone).
containers = Containers()


def _run(argv: list[str], what: str, timeout: float) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise MinihpcError(f"{what} failed: {r.stderr.strip()[-400:]}", "see minihpc status")
    return r.stdout


def _poll(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{' '.join(argv[:2])} timed out after {timeout:.0f} s")
    except OSError as e:  # no docker client at all
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: {e.strerror}")
