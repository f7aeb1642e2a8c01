#!/usr/bin/python3
"""slurmd's Epilog (slurm.conf): run as root on the job's node when the job ends.

Without cgroups (proctrack/linuxproc) Slurm finds a job's processes by their
parents, so a process the job daemonised (`cmd &` under nohup or setsid) is
re-parented and outlives the job. A job's environment is its own to change
(`env -u SLURM_JOB_ID setsid sleep 900 &`), so, as sites without cgroups do,
when the user has no other job on this node every process of theirs here ends.
While another of their jobs runs here, only what still carries this job's id
is killed (the other job's processes must live).

Spared: `docker exec` sessions (a process whose parent is outside the
container, ppid 0, and its descendants), which are the administrator's and
the tests' way in, and which no job can create; and whatever descends from
another job's slurmstepd, whoever's it is: a job of the user's that starts
on this node while this epilog runs has processes before slurmd lists them.

Having an Epilog at all also speeds Slurm up: slurmd then reports the job's
end with an epilog-complete message, which runs the scheduler at once; without
one the freed CPUs wait for slurmctld's next scheduling pass (bench/throughput.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
ROUNDS = 3  # a process may fork while its siblings are killed


def say(text: str) -> None:
    # Slurm discards an epilog's output: say it in the node's log (minihpc logs NODE).
    try:
        with open("/proc/1/fd/2", "w") as log:
            log.write(f"epilog: {text}\n")
    except OSError:
        pass


def status(text: str) -> tuple[int, int]:
    """(real uid, parent pid) from a /proc/PID/status. The real uid, not the
    effective one (the owner /proc shows): slurmstepd, root, takes the job
    user's effective uid for a moment to open their files, and must never read
    as theirs (an epilog that killed another job's slurmstepd so ended it
    NODE_FAIL, "missing from batch node")."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["PPid"])


def proc_status(pid: int | str) -> tuple[int, int] | None:
    """status() of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return status(f.read())
    except (OSError, KeyError, IndexError, ValueError):
        return None


def procs() -> dict[int, tuple[int, int]]:
    """Every process: (real uid, parent pid)."""
    seen = {int(name): proc_status(name) for name in os.listdir("/proc") if name.isdigit()}
    return {pid: st for pid, st in seen.items() if st is not None}  # None: gone meanwhile


def exec_session(pid: int, table: dict[int, tuple[int, int]]) -> bool:
    """Whether `pid` descends from a `docker exec` (ppid 0, not the container's init)."""
    seen = set()
    while pid in table and pid not in seen:
        seen.add(pid)
        ppid = table[pid][1]
        if ppid == 0:
            return pid != 1
        pid = ppid
    return False


def stepd_job(pid: int) -> str | None:
    """The job a slurmstepd serves ("slurmstepd: [123.batch]"); None for any other process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            m = re.match(rb"slurmstepd: \[(\d+)\.", f.read())
    except OSError:
        return None
    return m.group(1).decode() if m else None


def another_jobs(pid: int, job: str, table: dict[int, tuple[int, int]],
                 stepd: Callable[[int], str | None] = stepd_job) -> bool:
    """Whether `pid` descends from the slurmstepd of a job other than `job`
    (slurmstepd runs as root; a job's processes are its children until they
    daemonise, which re-parents them to the container's init)."""
    seen = set()
    while pid in table and pid not in seen:
        seen.add(pid)
        owner, ppid = table[pid]
        if owner == 0 and (of := stepd(pid)) is not None:
            return of != job
        pid = ppid
    return False


def carries(pid: int, job: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"SLURM_JOB_ID={job}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def other_jobs_here(uid: int, job: str) -> bool | None:
    """Whether another job with processes of `uid` runs on this node (slurmd's
    own view, no controller asked); None if slurmd cannot say."""
    try:
        r = subprocess.run(["scontrol", "listpids"], capture_output=True, text=True, timeout=10, env=ENV,
                           check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return False if "No job steps exist" in r.stdout + r.stderr else None
    for line in r.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[1] != job and fields[0].isdigit():
            st = proc_status(fields[0])
            if st is not None and st[0] == uid:
                return True
    return False


def runs_another_job(uid: int, job: str, table: dict[int, tuple[int, int]],
                     stepd: Callable[[int], str | None] = stepd_job) -> bool:
    """Whether a process of `uid` descends from another job's slurmstepd:
    the process table's own answer, which needs no slurmstepd to answer
    (a stale socket of a killed one makes `scontrol listpids` fail)."""
    return any(owner == uid and another_jobs(p, job, table, stepd) for p, (owner, _) in table.items())


def main() -> int:
    job, uid_s = os.environ.get("SLURM_JOB_ID", ""), os.environ.get("SLURM_JOB_UID", "")
    if not job.isdigit() or not uid_s.isdigit():
        say(f"no job id or uid in the environment (SLURM_JOB_ID={job!r}, SLURM_JOB_UID={uid_s!r})")
        return 0
    uid = int(uid_s)
    # Never root's or a system account's processes (slurmd, munge, the NFS client), whatever a job claims.
    if uid < 1000:
        return 0
    # slurmd's view, else (it cannot say) the process table's.
    others = other_jobs_here(uid, job)
    if others is None:
        others = runs_another_job(uid, job, procs())
        say(f"job {job}: slurmd could not list its jobs' processes; the process table says the user "
            f"{'has another job' if others else 'has no other job'} here")
    everything = not others
    killed: set[int] = set()
    for _ in range(ROUNDS):
        table = procs()
        targets = [p for p, (owner, _) in table.items() if owner == uid and p not in killed
                   and not exec_session(p, table) and not another_jobs(p, job, table)
                   and (everything or carries(p, job))]
        if not targets:
            break
        for p in targets:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # run by hand as a user: another's process is not theirs to end
            killed.add(p)
        if not killed.intersection(targets):
            break
    if killed:
        scope = "the user has no other job here, so all of their processes" if everything else \
            "processes carrying its id (another job of the user runs here)"
        say(f"job {job}: killed {len(killed)} process(es) it left behind ({scope}): "
            f"{' '.join(map(str, sorted(killed)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
