"""`minihpc site check SITE`: the proofs that make sense on a real site, run
over SSH as the site's ordinary user (minihpc.sitefile says how).

First, before anything is submitted, the site file is tried against the
site: the host answers, the key is accepted, SLURM and Snakemake are on the
login node, the partition, account and QOS take a job (`sbatch --test-only`),
and the work directory is the user's own and writable. Then, in a directory
of its own under the work directory, side by side (each proof in its own
directory, with its own jobs):

- the course's cores that need no root and no fault injection (executor
  selection and log retention; retries and incomplete outputs; generated
  unit tests; drift reports), with the site's partition and account;
- the shared filesystem's lag, measured: a file written by a job on a
  compute node, polled for from the login node;
- the memory and time limits the site really enforces: a small, short job
  over each of its requests, and what SLURM did to it.

Every job is short and small. On exit or Ctrl-C, every job of the check is
cancelled, its Snakemake processes are stopped and its directory removed.
"""

from __future__ import annotations

import json
import math
import queue
import re
import shlex
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from minihpc import PROOF_DIR, course, proofs, releases, stacks
from minihpc import lag as lag_of
from minihpc.cluster import Cluster
from minihpc.errors import BadInput
from minihpc.facts import Facts
from minihpc.proofs import Proof
from minihpc.sitefile import Site
from minihpc.transport import SshTransport

LOGIN = "login"  # the client's name for the site's login node (the SSH host)
PROOFS = PROOF_DIR / "site"
JOB_NAME = "minihpc-site-check"
# The course cores that run on a site: no root, no faults, no NFS profiles.
CORES = course.SITE_CORES
# The site's proofs after the cores (minihpc.commands.site lists them all for --only): staging is
# the course's staging lab through the site's scratch (course.SITE_STAGING), the others the check's own.
OWN = ("lag", course.SITE_STAGING, "limits")
LAG_SAMPLES = 3


# -- before anything is submitted -------------------------------------------------

def _reach(site: Site, c: Cluster) -> tuple[str, int]:
    """One command over SSH; a BadInput naming the field when it cannot be had."""
    probe = ("echo minihpc-ok; id -un; id -u; for t in sbatch srun sacct squeue scancel sinfo snakemake; do "
             "command -v $t >/dev/null || echo missing: $t; done")
    try:
        r = c.sh(probe, timeout=90)
    except Exception as e:  # noqa: BLE001 (a timeout or ssh itself missing: the site is not reachable)
        raise BadInput(f"site file {site.path}: ssh.host: {site.host}:{site.port} does not answer ({e})",
                       "check ssh.host, ssh.port and ssh.jump") from None
    if "minihpc-ok" not in r.out:
        said = r.out.strip().splitlines()[-1] if r.out.strip() else f"ssh exit {r.rc}"
        field, fix = "ssh.host", "check ssh.host, ssh.port and ssh.jump"
        if "Host key verification failed" in r.out or "REMOTE HOST IDENTIFICATION" in r.out:
            field, fix = "ssh.known_hosts", "put the login node's host key in the known_hosts file (ssh-keyscan)"
        elif "Permission denied" in r.out:
            field, fix = "ssh.identity", f"give a key the site accepts for {site.user} (or load it in the agent)"
        raise BadInput(f"site file {site.path}: {field}: {site.user}@{site.host}:{site.port}: {said}", fix)
    lines = r.out.split("minihpc-ok", 1)[1].split()
    missing = [x for x in r.out.splitlines() if x.startswith("missing: ")]
    if missing:
        tools = ", ".join(x.removeprefix("missing: ") for x in missing)
        raise BadInput(f"site file {site.path}: setup: {tools} not found on the login node",
                       "set setup to what makes them available, e.g. 'module load slurm snakemake'")
    return lines[0], int(lines[1])


def _take(site: Site, c: Cluster) -> list[tuple[str, int]]:
    """The partition, account and QOS take a job (sbatch --test-only submits
    nothing); the partition's responding nodes and their CPUs."""
    opts = " ".join(shlex.quote(o) for o in site.sbatch_options())
    r = c.sh(f"sbatch --test-only {opts} --job-name={JOB_NAME} --wrap true 2>&1")
    if "to start at" not in r.out:
        said = r.out.strip().splitlines()[-1] if r.out.strip() else f"exit {r.rc}"
        low = said.lower()
        field = ("slurm.account" if "account" in low else "slurm.qos" if "qos" in low else
                 "slurm.partition" if "partition" in low else
                 "limits" if re.search(r"time limit|memory|mem", low) else "slurm")
        parts = c.sh("sinfo -h -o %P").out.split()
        fix = {"slurm.partition": f"the site's partitions: {', '.join(parts) or 'none listed'}",
               "slurm.account": "give one of your accounts (sacctmgr show assoc user=$USER)",
               "slurm.qos": "give a QOS your account may use, or drop slurm.qos"}.get(field, "fix it")
        raise BadInput(f"site file {site.path}: {field}: sbatch refuses a job: {said}", fix)
    nodes = c.sh(f"sinfo -h -N -p {shlex.quote(site.partition)} -t idle,mix,alloc -o '%N %c'")
    found = sorted({(n, int(cpus)) for n, cpus in (line.split() for line in nodes.out.splitlines() if line.strip())})
    if not found:
        raise BadInput(f"site file {site.path}: slurm.partition: {site.partition} has no responding node",
                       "pick a partition with nodes up (sinfo)")
    return found


def _work_dir(site: Site, c: Cluster) -> None:
    """The work directory is the user's own, writable, and no symlink to elsewhere."""
    q = shlex.quote(site.work_dir)
    r = c.sh(f"mkdir -p {q} && test -w {q} && realpath {q} && stat -c %U {q}")
    lines = r.out.split()
    if r.rc != 0 or len(lines) < 2:
        raise BadInput(f"site file {site.path}: work_dir: {site.work_dir} is not writable by {site.user}: "
                       f"{r.out.strip()[-200:]}", "give a directory of yours on the shared filesystem")
    real, owner = lines[-2], lines[-1]
    if real != site.work_dir:
        raise BadInput(f"site file {site.path}: work_dir: {site.work_dir} leads to {real}",
                       "give the real path of a directory of your own")
    if owner != site.user:
        raise BadInput(f"site file {site.path}: work_dir: {site.work_dir} belongs to {owner}, not {site.user}",
                       "give a directory of your own: the check creates and removes files under it")


# The site's Slurm and Snakemake stack, read on its login node: Snakemake's
# plugins from the Python that runs its `snakemake` (the shebang's).
PLUGINS = ("snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep",
           "snakemake-storage-plugin-fs")
VERSIONS_PROBE = ("sinfo --version; echo snakemake $(snakemake --version); sm=$(command -v snakemake); "
                  "$(head -n 1 \"$sm\" | sed 's/^#!//') - <<'EOF'\n"
                  "import importlib.metadata as m\n"
                  f"for d in {PLUGINS!r}:\n"
                  "    try:\n        print(d, m.version(d))\n"
                  "    except m.PackageNotFoundError:\n        print(d, '-')\n"
                  "EOF")


def versions(c: Cluster) -> dict[str, str]:
    """The site's versions: slurm, snakemake and each plugin ('-' where none is installed)."""
    found = dict(line.split(None, 1) for line in c.sh(VERSIONS_PROBE, timeout=90).out.splitlines()
                 if len(line.split()) == 2)
    # sinfo --version: "slurm 24.11.5", or "slurm-wlm 26.05.5" (Debian's newer builds)
    slurm = next((v for k, v in found.items() if k in ("slurm", "slurm-wlm")), "-")
    return {"slurm": slurm, **{k: found.get(k, "-") for k in ("snakemake", *PLUGINS)}}


def reproduce(v: dict[str, str]) -> str:
    """What the site runs, and the `minihpc up` line that brings up the nearest cluster here."""
    said = ", ".join(f"{k} {v[k]}" for k in v)
    try:
        release, same = releases.nearest(v["slurm"])
    except ValueError:
        return f"site versions: {said}\nreproduce here: minihpc up (the site's Slurm version was not readable)"
    notes = [] if same else [f"the nearest Slurm minihpc builds ({', '.join(releases.RELEASES)}); the site's "
                             f"{v['slurm']} is not among them"]
    flags = f"--slurm {release.slurm}"
    if v.get("snakemake", "-") != "-":
        stack, exact = stacks.nearest(v["snakemake"])
        if release.debian not in stack.suites:
            if exact:
                notes.append(f"Snakemake {stack.snakemake} is pinned here for Slurm "
                             f"{', '.join(r.slurm for r in releases.RELEASES.values() if r.debian in stack.suites)}"
                             " only")
            stack, exact = stacks.default(), False
        elif not exact:
            notes.append(f"the nearest pinned Snakemake ({stack.snakemake}; the sets: "
                         f"{', '.join(s.snakemake for s in stacks.STACKS)}); the site's {v['snakemake']} is not "
                         "among them")
        if not stack.default:
            flags += f" {stack.flags()}"
        # The plugins decide what a profile may say (slurm-no-requeue is 2.8.0's): a difference is said.
        for package, ours in (("snakemake-executor-plugin-slurm", stack.slurm_plugin),
                              ("snakemake-storage-plugin-fs", stack.fs_plugin)):
            if v.get(package, "-") not in ("-", ours):
                notes.append(f"the site's {package} is {v[package]}, this set's {ours}")
    return f"site versions: {said}\nreproduce here: minihpc up {flags}" + (f" ({'; '.join(notes)})" if notes else "")


def connect(site: Site, session: bool = True) -> Cluster:
    """The site as a cluster client, every field of the site file tried
    against it first; nothing is submitted. Its shared directory is a new
    one under the work directory for a check (`session`), else the work
    directory itself (minihpc run --site)."""
    t = SshTransport(site, LOGIN)
    probe = Cluster(Facts(nodes=[], cpus=0, mem_mb=0, scratch_mb=0, login=LOGIN, lab_user=site.user), t)
    user, uid = _reach(site, probe)
    if user != site.user:
        raise BadInput(f"site file {site.path}: ssh.user: logged in as {user}, not {site.user}",
                       "set ssh.user to the name you log in as")
    nodes = _take(site, probe)
    _work_dir(site, probe)
    shared = (f"{site.work_dir}/check-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}" if session
              else site.work_dir)
    facts = Facts(nodes=[n for n, _ in nodes], cpus=min(cpus for _, cpus in nodes), mem_mb=0, scratch_mb=0,
                  partitions=[site.partition], cluster_name=site.host, lab_user=site.user, lab_uid=uid,
                  lab_account=site.account or "", other_user="", other_uid=-1, other_account="", login=LOGIN,
                  shared=shared, scratch=site.scratch or "", daemons=[])
    return Cluster(facts, t)


# -- cleaning up: on exit, error or Ctrl-C ------------------------------------------

def cleanup(c: Cluster) -> str:
    """Cancel every job of the check (its working directory is under the
    session), stop its processes on the login node (Snakemake, a poll for
    a file: whatever works in the session or names it), remove the session directory."""
    session = shlex.quote(c.facts.shared)
    script = (f"s={session}; ids=$(squeue --me -h -o '%i %Z' | awk -v s=\"$s\" 'index($2, s) == 1 {{print $1}}'); "
              f"[ -z \"$ids\" ] || scancel $ids; echo cancelled: $ids; "
              # This shell and those it runs under name the session too: never theirs to end.
              f"mine=' '; q=$$; while [ \"$q\" -gt 1 ] 2>/dev/null; do mine=\"$mine$q \"; "
              f"q=$(awk '{{print $4}}' /proc/$q/stat 2>/dev/null); done; "
              f"for p in $(pgrep -u \"$(id -u)\"); do case $mine in *\" $p \"*) continue;; esac; "
              f"seen=\"$(readlink /proc/$p/cwd) $(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null)\"; "
              f"case $seen in *\"$s\"*) kill $p 2>/dev/null && echo stopped: $p;; esac; done; "
              f"rm -rf \"$s\" && echo removed: \"$s\"")
    r = c.sh(script, timeout=120)
    return r.out


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM (a CI runner's cancel) cleans up as Ctrl-C does."""
    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# -- the site's own proofs -------------------------------------------------------------

def _sbatch(c: Cluster, site: Site, args: str, script: str) -> str:
    """Submit a small job of the check's own, as the site file asks; its id."""
    return c.submit(script, [*site.sbatch_options(), *args.split()], JOB_NAME)


def lag(c: Cluster, site: Site) -> Proof:
    """The shared filesystem's lag, measured (minihpc.lag)."""
    core = Proof("lag")
    measured = lag_of.measure(c, site.sbatch_options(), LAG_SAMPLES, JOB_NAME)
    worst, wait = measured.worst, measured.latency_wait
    text = "\n".join(measured.evidence) + f"\nworst lag {worst:.2f} s; --latency-wait {wait} covers it twice over, " \
                                           "plus 5 s\n"
    proofs.write(PROOFS, "site.lag", text)
    core.check(f"a job's output reaches the login node (worst of {LAG_SAMPLES}: {worst:.1f} s)",
               not measured.missing and not math.isnan(worst), text)
    core.check(f"the lag implies --latency-wait {wait}", wait is not None, text)
    return core


def over_limits(c: Cluster, site: Site) -> tuple[str, str]:
    """Submit a job over its memory request and one over its time limit.
    They run during the lag and staging proofs (the time limit is a minute's
    wait), after the cores."""
    hog = ("python3 -c 'import time; b = bytearray(400 * 2**20); [b.__setitem__(i, 1) for i in range(0, len(b), "
           "4096)]; time.sleep(10)'")
    return (_sbatch(c, site, "--mem=100M --time=1 --nodes=1 --ntasks=1", hog),
            _sbatch(c, site, "--mem=100M --time=1 --nodes=1 --ntasks=1", "sleep 150"))


def enforcement(c: Cluster, jobs: tuple[str, str]) -> Proof:
    """What the site did to the jobs over_limits submitted: reported as found, not assumed."""
    core = Proof("limits")
    mem, late = jobs
    m = c.ended(mem, 240)
    t = c.ended(late, 300)
    mem_verdict = {"OUT_OF_MEMORY": "enforced: killed for memory (OUT_OF_MEMORY)",
                   "FAILED": "enforced: killed (FAILED)",
                   "CANCELLED": "enforced: cancelled",
                   "COMPLETED": "NOT enforced: 400 MB in a 100 MB job completed"}.get(m["State"], m["State"])
    time_verdict = {"TIMEOUT": f"enforced: TIMEOUT after {t['ElapsedRaw']} s of a 60 s limit",
                    "COMPLETED": "NOT enforced: a 150 s job in a 1 min limit completed"}.get(t["State"], t["State"])
    text = (f"memory: job {mem} asked 100M and touched 400 MB: {m['State']} {m['ExitCode']}, MaxRSS {m['MaxRSS']}"
            f" -> {mem_verdict}\ntime: job {late} asked 1 min and slept 150 s: {t['State']} after "
            f"{t['ElapsedRaw']} s -> {time_verdict}\n")
    proofs.write(PROOFS, "site.limits", text, c.sh(f"sacct -j {mem},{late} -o JobID,State,ExitCode,ElapsedRaw,"
                                                    "MaxRSS,ReqMem,Timelimit"))
    core.check(f"memory over the request: {mem_verdict}", m["State"] != "", text)
    core.check(f"time over the limit: {time_verdict}", t["State"] != "", text)
    return core


# -- the whole check --------------------------------------------------------------------

def check(site: Site, names: list[str] | None = None) -> int:
    c = connect(site)
    print(f"site: {site.user}@{site.host}:{site.port}, partition {site.partition} "
          f"({len(c.facts.nodes)} nodes: {' '.join(c.facts.nodes)}), work in {c.facts.shared}", flush=True)
    found = versions(c)
    print(reproduce(found), flush=True)
    limit_jobs = ("", "")

    def course_proof(name: str) -> Callable[[], Proof]:
        return lambda: course.on_site(name, c, site, PROOFS)
    runs: dict[str, Callable[[], Proof]] = {
        **{name: course_proof(name) for name in CORES}, "lag": lambda: lag(c, site),
        **({course.SITE_STAGING: course_proof(course.SITE_STAGING)} if site.scratch else {}),
        "limits": lambda: enforcement(c, limit_jobs)}
    if not site.scratch:
        print("staging: not run: the site file gives no node-local scratch (scratch: null)", flush=True)
    parts = [n for n in runs if n in names] if names else list(runs)
    try:
        with _interruptible():
            if "limits" in parts:
                limit_jobs = over_limits(c, site)
            cores_run = _side_by_side({n: runs[n] for n in parts})
    except KeyboardInterrupt:
        print("minihpc: interrupted: cancelling the check's jobs and removing its directory", file=sys.stderr)
        print(_stop_and_clean(c, site), file=sys.stderr)
        raise
    else:
        PROOFS.mkdir(parents=True, exist_ok=True)
        (PROOFS / "cleanup.txt").write_text(cleanup(c))
    finally:
        c.transport.close()  # type: ignore[attr-defined]
    checks = [ch for n in parts for ch in cores_run[n].checks]
    print(proofs.table(checks))
    evidence = proofs.write_evidence(checks, PROOFS)
    (PROOFS / "site.json").write_text(json.dumps({"host": site.host, "user": site.user, "partition":
                                                  site.partition, "nodes": c.facts.nodes, "versions": found},
                                                 indent=1) + "\n")
    return proofs.verdict(checks, evidence)


def _side_by_side(runs: dict[str, Callable[[], Proof]]) -> dict[str, Proof]:
    """Run the proofs at once, each in its own directory with its own jobs
    (none judges another's): the check takes as long as its longest proof,
    not their sum. Each is given its site's client (nothing of this
    thread's goes with it). Daemon threads: after Ctrl-C nothing waits for
    them (_stop_and_clean ends what they started). A proof that raised is
    raised once every other has ended."""
    done: queue.Queue[tuple[str, Proof | BaseException, float]] = queue.Queue()

    def one(name: str, run: Callable[[], Proof]) -> None:
        started = time.monotonic()
        try:
            done.put((name, run(), time.monotonic() - started))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            done.put((name, e, time.monotonic() - started))

    for name, run in runs.items():
        print(f"running {name} ...", flush=True)
        threading.Thread(target=one, args=(name, run), name=f"site-check-{name}", daemon=True).start()
    out: dict[str, Proof] = {}
    failure: BaseException | None = None
    for _ in runs:
        while True:
            try:  # with a timeout: a signal that another thread took is acted on here within a second
                name, got, took = done.get(timeout=1)
                break
            except queue.Empty:
                continue
        if isinstance(got, BaseException):
            print(f"  {name}: stopped after {took:.0f} s: {got}", file=sys.stderr, flush=True)
            failure = failure or got
            continue
        out[name] = got
        print(f"  {name}: {sum(ch.ok for ch in got.checks)}/{len(got.checks)} checks passed in {took:.0f} s",
              flush=True)
        for ch in got.failed:
            print(f"  FAIL {name}: {ch.name}: {ch.evidence[:500]}", file=sys.stderr)
    if failure is not None:
        raise failure
    return out


def _stop_and_clean(c: Cluster, site: Site) -> str:
    """After Ctrl-C: no proof starts another command on the site (their
    transport refuses from now on), and the check's jobs, processes and
    directory go (cleanup, over a connection of its own)."""
    c.transport.stop()  # type: ignore[attr-defined]
    return cleanup(Cluster(c.facts, SshTransport(site, LOGIN)))
