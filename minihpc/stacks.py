"""The Snakemake stacks minihpc installs: sets of Snakemake, the SLURM executor
plugin (with its job-step plugin) and the fs storage plugin known to work
together, each pinned per Debian release in cluster/locks/ and installed
offline into the images as the default is.

`minihpc up --snakemake V --slurm-plugin V --fs-plugin V` (env
SNAKEMAKE_VERSION, SLURM_PLUGIN_VERSION, FS_PLUGIN_VERSION) picks the set
matching every version given; a combination no set holds is refused with
the sets that would work, before anything starts. A cluster keeps its stack
as it keeps its Slurm release: the images are built with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from minihpc.errors import BadInput

# What every stack's environment holds beside Snakemake (the nodes' own tests).
COMMON = ("pytest==9.2.0",)


@dataclass(frozen=True)
class Stack:
    snakemake: str
    slurm_plugin: str  # snakemake-executor-plugin-slurm
    jobstep_plugin: str  # snakemake-executor-plugin-slurm-jobstep, which the plugin runs inside each job
    fs_plugin: str  # snakemake-storage-plugin-fs
    # The Debian releases (minihpc.releases) it is locked for: Snakemake must run on their Python.
    suites: tuple[str, ...]
    why: str = ""  # where the set comes from

    @property
    def default(self) -> bool:
        return self == STACKS[0]

    @property
    def pinned(self) -> bool:
        """Whether this minihpc still pins the set (a cluster's facts may name one it no longer does)."""
        return self in STACKS

    def lock(self, suite: str) -> str:
        """The lock file's name in cluster/locks/ (without .lock) for this stack on a Debian release."""
        return suite if self.default else f"{suite}-snakemake{self.snakemake}"

    @property
    def tag(self) -> str:
        """What the images' tag adds for this stack (nothing for the default)."""
        return "" if self.default else f"-snakemake{self.snakemake}"

    def requirements(self) -> str:
        return "\n".join((f"snakemake=={self.snakemake}", f"snakemake-executor-plugin-slurm=={self.slurm_plugin}",
                          f"snakemake-executor-plugin-slurm-jobstep=={self.jobstep_plugin}",
                          f"snakemake-storage-plugin-fs=={self.fs_plugin}", *COMMON)) + "\n"

    def describe(self) -> str:
        jobstep = f", jobstep {self.jobstep_plugin}" if self.jobstep_plugin else ""  # a cluster's facts lack it
        return f"Snakemake {self.snakemake} (slurm plugin {self.slurm_plugin}{jobstep}, fs plugin {self.fs_plugin})"

    def flags(self) -> str:
        """The `minihpc up` flags that pick this stack ("" for the default)."""
        return "" if self.default else f"--snakemake {self.snakemake}"


STACKS = (
    Stack("9.27.1", "2.8.0", "0.6.1", "1.1.3", suites=("bookworm", "trixie", "forky"),
          why="the newest of each, as the course is written for"),
    # What pip installs for `snakemake==8.30.0` beside the plugins unpinned: the
    # newest SLURM plugin (its metadata allows Snakemake 8) and the newest fs
    # plugin for Snakemake 8's storage interface (<4; fs 1.1 needs >=4.1).
    # The SLURM plugin 1.x of Snakemake 8's time is not offered: it has no
    # slurm-no-requeue, and Snakemake refuses the course's profile with
    # "unrecognized arguments: --slurm-no-requeue=True" (docs/versions.md).
    Stack("8.30.0", "2.8.0", "0.6.1", "1.0.6", suites=("trixie",),
          why="the last Snakemake 8, with the plugins pip pairs with it"),
)


def default() -> Stack:
    return STACKS[0]


def _known(suite: str | None = None) -> str:
    return "; ".join(f"--snakemake {s.snakemake} --slurm-plugin {s.slurm_plugin} --fs-plugin {s.fs_plugin}"
                     f"{'' if suite is None or suite in s.suites else ' (not on this Slurm release)'}"
                     for s in STACKS)


def choose(snakemake: str = "", slurm_plugin: str = "", fs_plugin: str = "", suite: str | None = None) -> Stack:
    """The stack holding every version given (the first, newest, if several
    do; the default if none is given), built for the Debian release `suite`."""
    asked = {"snakemake": snakemake.strip(), "slurm_plugin": slurm_plugin.strip(), "fs_plugin": fs_plugin.strip()}
    given = {k: v for k, v in asked.items() if v}
    matching = [s for s in STACKS if all(getattr(s, k) == v for k, v in given.items())]
    if not matching:
        said = " with ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
        raise BadInput(f"{said}: no set minihpc pins has {'these versions together' if len(given) > 1 else 'it'}",
                       f"give one of the sets known to work together: {_known(suite)}")
    if suite is not None:
        on_suite = [s for s in matching if suite in s.suites]
        if not on_suite:
            s = matching[0]
            from minihpc.releases import RELEASES
            on = [f"{r.slurm} (Debian {r.debian})" for r in RELEASES.values() if r.debian in s.suites]
            raise BadInput(f"{s.describe()} is pinned for Slurm {', '.join(on)} only, not Debian {suite}'s",
                           f"give --slurm {' or '.join(o.split()[0] for o in on)}, or another set: " + _known(suite))
        return on_suite[0]
    return matching[0]


def recorded(snakemake: str, slurm_plugin: str, fs_plugin: str) -> Stack:
    """The stack a cluster's facts name: the pinned set with those versions,
    or, if this minihpc no longer pins it, the versions as they were."""
    found = [s for s in STACKS if (s.snakemake, s.slurm_plugin, s.fs_plugin) == (snakemake, slurm_plugin, fs_plugin)]
    return found[0] if found else Stack(snakemake, slurm_plugin, "", fs_plugin, suites=())


def nearest(version: str) -> tuple[Stack, bool]:
    """The stack nearest to a site's Snakemake version (the same major, the
    newest of it, else the default), and whether it is that exact version."""
    exact = [s for s in STACKS if s.snakemake == version.strip()]
    if exact:
        return exact[0], True
    major = version.strip().split(".")[0]
    same = [s for s in STACKS if s.snakemake.split(".")[0] == major]
    return (same or [default()])[0], False


def lock_all(which: list[str]) -> None:
    """`make lock`: cluster/lock.sh for every stack on every Debian release it
    is pinned for (or only the locks named, e.g. trixie-snakemake8.30.0)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from minihpc import ROOT
    known = {s.lock(suite): (suite, s) for s in STACKS for suite in s.suites}
    unknown = [w for w in which if w not in known]
    if unknown:
        sys.exit(f"lock: no lock is named {' '.join(unknown)}; name some of {', '.join(known)} (LOCKS=...), or none "
                 "for all")
    pairs = [known[w] for w in which] or list(known.values())
    for suite, s in pairs:
        with tempfile.NamedTemporaryFile("w", suffix=".in") as reqs:
            reqs.write(s.requirements())
            reqs.flush()
            Path(reqs.name).chmod(0o644)  # read by the container, whoever the engine runs it as
            subprocess.run([str(Path(ROOT) / "cluster/lock.sh"), suite, s.lock(suite), reqs.name], check=True)


if __name__ == "__main__":
    import sys
    lock_all(sys.argv[1:])
