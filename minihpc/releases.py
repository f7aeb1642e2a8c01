"""The Slurm releases minihpc runs, each built from one Debian release's own
packages, and the one place that knows how they differ.

`minihpc up --slurm 22.05|24.11|26.05` (env SLURM_RELEASE) picks one; a
cluster keeps its release until it is destroyed. Every difference the
rendered configuration or the image follows is written here, with where it
comes from; a feature a release cannot give is in `lacks`, which `minihpc
status` and docs/versions.md show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from minihpc.errors import BadInput


@dataclass(frozen=True)
class Release:
    slurm: str  # the major release, as --slurm names it
    packaged: str  # the exact version Debian packages
    debian: str  # the Debian release (suite) the image is built from
    debian_version: str
    python: str  # the image's Python, which Snakemake runs on
    # cgroup.conf's lines: how this release runs without cgroup control.
    cgroup_conf: str = "CgroupPlugin=disabled"
    # Debian packages this release's image needs beyond the others'.
    packages: tuple[str, ...] = ()
    # slurm.conf lines this release drops or changes: key -> line, or "" to leave the key out.
    conf: dict[str, str] = field(default_factory=dict)
    # What this release cannot give that the default does: (feature, why).
    lacks: tuple[tuple[str, str], ...] = ()
    # Whether `scontrol reconfigure` takes a new node count, or slurmctld must restart for it.
    reconfigure_resizes: bool = True
    # The newest REST API version its slurmrestd serves (/slurm/<it>/..., /slurmdb/<it>/...).
    rest_api: str = "v0.0.42"

    @property
    def tag(self) -> str:
        """The images' tag suffix: one set of images per release, side by side."""
        return f"slurm{self.slurm}"

    @property
    def base_image(self) -> str:
        return f"minihpc/debian:{self.debian}"


RELEASES = {r.slurm: r for r in (
    Release(
        slurm="22.05", packaged="22.05.8", debian="bookworm", debian_version="12", python="3.11",
        # 22.05's slurmd always loads a cgroup plugin (cgroup_g_init in slurmd.c);
        # "disabled" only exists from 23.02 (src/interfaces/cgroup.c).
        cgroup_conf="CgroupPlugin=autodetect",
        # Debian 12's mpi/pmix plugin dlopens pmix2/lib/libpmix.so, a name only
        # libpmix-dev gives; without it every srun fails: "Invalid MPI type 'pmix'".
        packages=("libpmix-dev",),
        # 22.05's slurmctld exits on a reconfigure that changes the node count:
        # "fatal: MaxNodeCount has changed (2->3) during reconfig, slurmctld must
        # be restarted" (up --nodes 3 here); 23.11 and later restart themselves.
        reconfigure_resizes=False,
        rest_api="v0.0.38",  # openapi/v0.0.38 and dbv0.0.38 (the data_parser plugins came in 23.02)
    ),
    Release(slurm="24.11", packaged="24.11.5", debian="trixie", debian_version="13", python="3.13"),
    Release(
        slurm="26.05", packaged="26.05.5", debian="forky", debian_version="14 (testing)", python="3.14",
        # Debian 14 builds Slurm without mpi/pmix (no mpi_pmix*.so in forky's
        # Contents-amd64): MpiDefault=pmix would fail every srun, the SLURM
        # plugin's job step included. Its Open MPI (6) speaks PMIx only.
        conf={"MpiDefault": "MpiDefault=none"},
        rest_api="v0.0.45",
        lacks=(("MPI ranks started by srun (--mpi=pmix)",
                "Debian 14's Slurm has no mpi/pmix plugin; srun starts unrelated copies"),),
    ),
)}
DEFAULT = "24.11"
# Every Debian release an image is built from (cluster/lock.sh pins Python for each).
SUITES = tuple(r.debian for r in RELEASES.values())


def named(raw: str) -> Release:
    """The release `--slurm` names: a major (22.05) or its exact packaged version."""
    value = raw.strip() or DEFAULT
    for r in RELEASES.values():
        if value in (r.slurm, r.packaged):
            return r
    raise BadInput(f"--slurm {value!r} is not a Slurm release minihpc builds",
                   "give one of " + ", ".join(f"{r.slurm} (Debian {r.debian_version}: {r.packaged})"
                                              for r in RELEASES.values()) + f"; the default is {DEFAULT}")


def default() -> Release:
    return RELEASES[DEFAULT]


def nearest(version: str) -> tuple[Release, bool]:
    """The release minihpc builds nearest to a site's Slurm version (e.g.
    23.11.4), and whether it is that site's own major release."""
    m = re.match(r"(\d+)\.(\d+)", version.strip())
    if not m:
        raise ValueError(f"not a Slurm version: {version!r}")
    months = int(m[1]) * 12 + int(m[2])

    def distance(r: Release) -> tuple[int, int]:
        y, mo = map(int, r.slurm.split("."))
        return abs(y * 12 + mo - months), -(y * 12 + mo)  # equally near: the newer
    best = min(RELEASES.values(), key=distance)
    return best, best.slurm == f"{m[1]}.{m[2]}"
