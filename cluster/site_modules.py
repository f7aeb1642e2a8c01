#!/usr/bin/env python3
"""The site's module tree, written into the image at build time (Lmod, Lua
modulefiles): what a site's administrator maintains, on a path every node
has (the same image on every node).

    /opt/site/modulefiles/NAME/VERSION.lua   what `module avail` lists
    /opt/site/software/NAME/VERSION/...       what each one puts on a path

Each module sets only what it should (PATH, PYTHONPATH, MANPATH) and names
what it needs (depends_on): none of them shadows the cluster's own Python
environment, so loading one never breaks Snakemake or another. Versions
are the installed packages' own (dpkg, pip), read here, not written down
twice. Run as root in the image: python3 site_modules.py MPI_PI_SCRIPT
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path("/opt/site")
MODULES, SOFTWARE = ROOT / "modulefiles", ROOT / "software"
LOCAL = ROOT / "local"  # minihpc.modules.LOCAL: the software share
VENV = Path("/opt/minihpc/venv")
# Open MPI's commands, as Debian installs them (the un-suffixed names are
# removed from /usr/bin: without the module there is no mpiexec, as on a site).
OPENMPI_COMMANDS = ("mpiexec", "mpirun", "mpicc", "mpicxx", "mpifort", "ompi_info", "oshrun", "oshmem_info")


def dpkg_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True,
                         check=True).stdout
    # 5.0.7-1 -> 5.0.7; 4.0.3-1+b1 -> 4.0.3 (the upstream version a user asks for)
    return re.sub(r"^\d+:", "", out).split("-")[0].split("+")[0]


def python_version(dist: str, path: Path) -> str:
    return next(d.version for d in importlib.metadata.distributions(path=[str(path)])
                if d.metadata["Name"].lower() == dist)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def modulefile(name: str, version: str, what: str, body: str, help_text: str) -> None:
    write(MODULES / name / f"{version}.lua",
          f"-- {name}/{version}: written by minihpc (cluster/site_modules.py) at image build\n"
          f"help([[{help_text}]])\n"
          f'whatis("Name: {name}")\nwhatis("Version: {version}")\nwhatis("Description: {what}")\n{body}')


def snakemake() -> None:
    site = VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    version = python_version("snakemake", site)
    plugins = ", ".join(f"{d} {python_version(d, site)}" for d in (
        "snakemake-executor-plugin-slurm", "snakemake-storage-plugin-fs"))
    modulefile("snakemake", version, "Snakemake with the SLURM executor and fs storage plugins",
               f'prepend_path("PATH", "{VENV}/bin")\n',
               f"Snakemake {version} with {plugins}: the cluster's own environment ({VENV}).\n"
               "It is also on every login shell's PATH, so `module purge` leaves it usable.")


def scipy_stack() -> None:
    # Its one version: the directory the image installed it in (cluster/Dockerfile).
    (stack,) = (SOFTWARE / "scipy-stack").iterdir()
    mpl = python_version("matplotlib", stack)
    modulefile("scipy-stack", stack.name, "numpy, pandas and matplotlib for the cluster's Python",
               f'prepend_path("PYTHONPATH", "{stack}")\n',
               f"matplotlib {mpl} and what it needs, over the cluster's Python, whose numpy and pandas it uses.\n"
               "Python: python3 (the cluster's).")


def launcher() -> str:
    """How this image's Slurm starts MPI ranks: srun through PMIx where Debian's
    Slurm has mpi/pmix, else Open MPI's own mpiexec in the allocation (Debian
    14's Slurm has no mpi/pmix; minihpc/releases.py)."""
    return "srun --mpi=pmix" if list(Path("/usr/lib").glob("*/slurm-wlm/mpi_pmix.so")) else "mpiexec"


def openmpi() -> str:
    version = dpkg_version("openmpi-bin")
    bin_dir = SOFTWARE / "openmpi" / version / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for cmd in OPENMPI_COMMANDS:
        real = Path(f"/usr/bin/{cmd}.openmpi")
        if real.exists():
            (bin_dir / cmd).symlink_to(real)
            Path(f"/usr/bin/{cmd}").unlink(missing_ok=True)  # Debian's alternative: only the module gives it
    how = "srun --mpi=pmix PROGRAM (or mpiexec PROGRAM)" if launcher() != "mpiexec" else (
        "mpiexec PROGRAM (this Slurm has no mpi/pmix: srun alone starts unrelated copies)")
    modulefile("openmpi", version, f"Open MPI (Debian's), launched by {launcher()} in an allocation",
               f'family("mpi")\nprepend_path("PATH", "{bin_dir}")\n'
               'prepend_path("MANPATH", "/usr/share/man")\n'
               # The nodes talk over their one network, eth0: Open MPI 6.0.0rc2 (Debian 14)
               # finds no "reachable pairing" between nodes' interfaces unless told.
               'setenv("OMPI_MCA_btl_tcp_if_include", "eth0")\n',
               f"Open MPI {version}. In a SLURM allocation: {how}:\n"
               "one rank per task, across the allocation's nodes.")
    return version


def mpi4py(mpi: str) -> None:
    version = dpkg_version("python3-mpi4py")
    # Debian's, built against its Open MPI, alone on PYTHONPATH (the rest of
    # /usr/lib/python3/dist-packages would shadow the cluster's own packages).
    target = SOFTWARE / "mpi4py" / version
    target.mkdir(parents=True, exist_ok=True)
    (target / "mpi4py").symlink_to("/usr/lib/python3/dist-packages/mpi4py")
    modulefile("mpi4py", version, "MPI for Python", f'depends_on("openmpi/{mpi}")\n'
               f'prepend_path("PYTHONPATH", "{target}")\n', f"mpi4py {version} for the cluster's python3, over "
               f"openmpi/{mpi} (loaded with it).")


def mpi_demo(mpi4py_version: str, script: Path) -> None:
    bin_dir = SOFTWARE / "mpi-demo" / "1.0" / "bin"
    write(bin_dir / "mpi-pi", script.read_text(), 0o755)
    modulefile("mpi-demo", "1.0", "mpi-pi: an MPI scaling demo that prints one JSON line",
               f'depends_on("mpi4py/{mpi4py_version}")\nprepend_path("PATH", "{bin_dir}")\n',
               "mpi-pi [INTERVALS]: pi by the midpoint rule, its strips dealt to the ranks; rank 0 prints the "
               "ranks, the node of each, pi, its error and the seconds it took.\n"
               f"  {launcher()} -n 4 mpi-pi     (inside an allocation: salloc, sbatch)")


# Debian's /etc/profile.d/lmod.sh works out the same values in every login shell (a dozen commands,
# 0.05 s of CPU each time: every command minihpc runs on a node is a login shell); they are written
# down here once. Lmod's search path: the site's tree, then the added modules'. BASH_ENV gives batch
# scripts and Snakemake's shell commands `module` too; MANPATH keeps the system's (the trailing colon).
LOGIN_SHELL = """# minihpc: Debian's lmod.sh with what it works out at each login written down once
# (cluster/site_modules.py, at image build)
if [ -z "${{MODULEPATH_ROOT:-}}" ]; then
  export USER="${{USER-${{LOGNAME}}}}"
  export MODULEPATH_ROOT=/usr/share/modulefiles LMOD_sys=Linux
  export MODULEPATH="${{MODULEPATH:+$MODULEPATH:}}{modulepath}"
  [ -n "${{BASH_ENV:-}}" ] || export BASH_ENV=/usr/share/lmod/lmod/init/bash
  export MANPATH="/usr/share/lmod/lmod/share/man:${{MANPATH:-}}"
fi
if [ -n "${{BASH_VERSION:-}}" ]; then
  . /usr/share/lmod/lmod/init/bash >/dev/null
else
  . /usr/share/lmod/lmod/init/sh >/dev/null
fi
"""


def login_shell() -> None:
    write(Path("/etc/profile.d/lmod.sh"), LOGIN_SHELL.format(modulepath=f"{MODULES}:{LOCAL / 'modulefiles'}"))


def main(argv: list[str]) -> int:
    os.umask(0o022)
    # The added modules' tree (minihpc modules add) is on the software share every node mounts
    # (docker-compose.yml): made here so that the path is there before the share is first mounted.
    for d in (LOCAL / "modulefiles", LOCAL / "software"):
        d.mkdir(parents=True, exist_ok=True)
    login_shell()
    snakemake()
    scipy_stack()
    mpi = openmpi()
    mpi4py(mpi)
    mpi_demo(dpkg_version("python3-mpi4py"), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
