"""`minihpc prove`'s faulted run: the workflow once more through its profile,
from an empty directory, while faults land on it, each at a moment chosen
from the run and each judged by what it hit.

- busy: another user's load (minihpc.busy) holds every CPU but one node's
  from the start, so the run's jobs queue behind hers; it ends where the node
  is killed (else with the run);
- slow-nfs[=PROFILE]: the shared filesystem runs PROFILE (lag-10: what a job
  writes shows on the login node 10 s later) for the whole run, its delay on
  the run's own directory only (other users' files show as before), and jobs
  beside the run measure the lag there (minihpc.lag) for the audit's
  latency-wait;
- eio: the first create or write of one output a SLURM job makes fails with
  EIO, once in all, whichever node does it (a cluster-wide rule: the job run
  again writes it, wherever it lands);
- session-lost: the run's Snakemake is hung up (SIGHUP, as a dropped SSH
  session does) while one of its jobs runs: it dies without cleaning up, its
  jobs run on, its lock and its outputs' incomplete markers stay. The user
  comes back and runs the same command again at once (after `--unlock`,
  which a killed run always needs): the profile decides whether that resume
  runs again what was left incomplete or refuses (IncompleteFilesException);
  refused, minihpc cancels the lost run's jobs and resumes with
  --rerun-incomplete, as the fix says, so the faults after it still land;
- slurmctld-restart: slurmctld restarts while one of the run's jobs runs
  (its batch step started on its node);
- node-kill: then the node one of the run's jobs runs on is killed (a power
  cut) and marked down at once, as a site's node health check would (SLURM
  alone notices after SlurmdTimeout, 30 s or more: its jobs end NODE_FAIL
  either way); it is started again and waited for.

One run takes them all, in that order: a run per fault would cost the
workflow five times over, and each fault's recovery is paid once either
way. Each fault ends with one
verdict: survived (what it hit was run again and every output is the
reference's), changed (it survived, but a file its work made differs: a
failure of meaning), failed (its work was never done again: the reason from
sacct and the job's log, and the profile setting that survives it) or not
applied (the run gave it no moment: it had ended, or no job ran). Whatever
happens, every fault is undone before the run's files are read.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from minihpc import busy, lag
from minihpc.audit import setting
from minihpc.cluster import Cluster, parse_sacct
from minihpc.errors import BadInput, MinihpcError
from minihpc.facts import Facts
from minihpc.faults import Faults
from minihpc.runner import Report, clean

NAMES = ("busy", "slow-nfs", "eio", "session-lost", "slurmctld-restart", "node-kill")
SLOW_NFS = "lag-10"
SURVIVED, CHANGED, FAILED, NOT_APPLIED = "survived", "survived with different outputs", "failed", "not applied"
# Each fails the proof: a fault the run gave no moment proved nothing (and a workflow could dodge one).
BAD = (CHANGED, FAILED, NOT_APPLIED)
# Faults that need a second compute node: the run goes on beside them.
TWO_NODES = ("busy", "node-kill")
# How long the busy load may last at most (its deadline ends it even if minihpc does not).
BUSY_MINUTES = 15
LAG_SAMPLES = 2
# How long a lag probe's file is waited for (a file that never shows is a finding) and its job's end.
LAG_WAIT_S = 120
# How long a killed node may take to show down (marked down at once) and to be back in service.
NODE_DOWN_S, NODE_BACK_S = 60, 240
# How long cancelled jobs of a lost session may take to leave the queue.
LOST_JOBS_S = 60
# How long session-lost waits, once a job runs, for one of the run's outputs to be being written.
WRITING_WAIT_S = 20
POLL_S = 1.0
MISSING_FILES = re.compile(r"Missing files after \d+ seconds?\.[^\n]*")
# A Snakemake process's command line (pgrep -f): the run's own is told by its working directory.
SNAKEMAKE = "bin/snakemake( |$)"
# What makes each fault survivable, when it was not.
FIX = {
    "busy": "`jobs:` at most the QOS's submit limit, and `runtime` that covers a job's own work (queue time "
            "does not count)",
    "eio": "`retries: 2`: a job that failed on a write runs again",
    "node-kill": "`retries: 2` and `slurm-no-requeue: true`: the lost job runs again, on another node",
    "session-lost": "`rerun-incomplete: true`: a resume after a lost session runs again what it left incomplete "
                    "(first `scancel --name=RUN_ID` its jobs, which run on, and `snakemake --unlock`)",
    "slurmctld-restart": "`retries: 2`: a job step refused while slurmctld restarted runs again",
}


@dataclass(frozen=True)
class Choice:
    faults: tuple[str, ...]
    slow_profile: str = SLOW_NFS
    left_out: tuple[str, ...] = ()  # of the default set, what this cluster cannot take (one node)


@dataclass
class Outcome:
    fault: str
    verdict: str = NOT_APPLIED
    # Seconds into the run when it landed, and from then to the verdict (the run's end).
    at_s: float | None = None
    to_verdict_s: float | None = None
    did: str = ""  # what it did, one line
    hit: list[str] = field(default_factory=list)  # the run's jobs it hit (ids)
    evidence: list[str] = field(default_factory=list)
    why: str = ""
    fix: str = ""


def choose(spec: str | None, facts: Facts | None, site: bool) -> Choice:
    """--faults (None: the default set: every fault on minihpc, none on a
    site), checked before anything runs."""
    if site:
        if spec not in (None, "none"):
            raise BadInput(f"--faults {spec}: faults are never applied to a real site (--site): they kill nodes "
                           "and restart its daemons", "leave out --faults: on a site prove checks meaning and audits "
                                                      "the profile")
        return Choice(())
    if spec in (None, "default"):
        words = list(NAMES)
    elif spec == "none":
        words = []
    else:
        words = [w.strip() for w in spec.split(",")]
    chosen, profile = [], SLOW_NFS
    for w in words:
        name, eq, value = w.partition("=")
        if name not in NAMES or (eq and name != "slow-nfs"):
            raise BadInput(f"--faults: no fault {w!r} for prove", f"choose from {', '.join(NAMES)} (comma-separated; "
                                                                  "slow-nfs=PROFILE names a profile), or none")
        if name in chosen:
            raise BadInput(f"--faults names {name} twice", "name each fault once")
        if eq:
            from nfs.profiles import ProfileError, named
            try:
                named(value)
            except ProfileError as e:
                raise BadInput(f"--faults slow-nfs={value}: {e}", "e.g. --faults slow-nfs=lag-10 "
                                                                  "(minihpc nfs list shows them)") from None
            profile = value
        chosen.append(name)
    nodes = len(facts.nodes) if facts else 0
    if spec in (None, "default") and nodes < 2:  # the default: what this cluster can take, the rest said
        return Choice(tuple(n for n in NAMES if n not in TWO_NODES), profile, TWO_NODES)
    for name in TWO_NODES:
        if name in chosen and nodes < 2:
            rest = ",".join(n for n in chosen if n not in TWO_NODES) or "none"
            raise BadInput(f"--faults {name} needs at least 2 compute nodes (the run must go on beside it); this "
                           f"cluster has {nodes}", f"minihpc up --nodes 2, or leave it out: --faults {rest}")
    return Choice(tuple(n for n in NAMES if n in chosen), profile)


# A path the fault rule may name as it is: the workflow chose its outputs' names, and a comma, an `=` or a
# glob character would be read as more of the rule (another key, more files).
PLAIN_PATH = re.compile(r"[\w.+-]+(?:/[\w.+-]+)*")


def eio_target(outputs: dict[str, str], slurm_rules: set[str]) -> tuple[str, str] | None:
    """The output (path, rule) whose first write fails: one a SLURM job made
    in the policy run, the last by name (not a log: `outputs` holds no logs),
    of those with plain names inside the run directory."""
    made = sorted((p, r) for p, r in outputs.items() if r in slurm_rules and PLAIN_PATH.fullmatch(p)
                  and ".." not in p.split("/"))
    return made[-1] if made else None


class Injector:
    """The faults of one run: set up before it (before()), landed during it
    (a thread: during()), undone after it (after(), whatever happened)."""

    def __init__(self, cluster: Cluster, choice: Choice, remote: str, target: tuple[str, str] | None,
                 sbatch: list[str]) -> None:
        self.cluster, self.choice, self.remote, self.target, self.sbatch = cluster, choice, remote, target, sbatch
        self.outcomes = {n: Outcome(n) for n in choice.faults}
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.lag: lag.Lag | None = None
        self._prior_nfs: str | None = None
        self._in_service: set[str] = set()  # the compute nodes in service before the run
        self._busy = False
        self._killed: str | None = None
        self._started = False
        self._threads: list[threading.Thread] = []
        # The run's SLURM run ID once Snakemake has said it (prove.faulted reads its output): the
        # last one said, once resumed, and None while the run that said it is a lost session's.
        self.said_run_id: Callable[[], str | None] = lambda: None
        # session-lost: whether the first Snakemake has exited, whether it was hung up (the lock
        # orders the two), and the run IDs of lost sessions (their jobs run on until cancelled).
        self._lock = threading.Lock()
        self._first_over = False
        self.hung_up = False
        self.lost_ids: list[str] = []
        self._undone: list[str] | None = None
        # Filled by prove.faulted: the run's report, Snakemake's output, what could not be undone.
        self.report: Report | None = None
        self.output = ""
        self.undone: list[str] = []

    def run_id(self) -> str | None:
        rid = self.said_run_id()
        return None if rid in self.lost_ids else rid

    @property
    def faults(self) -> Faults:
        return Faults(self.cluster)

    def _at(self, name: str, did: str) -> None:
        o = self.outcomes[name]
        o.at_s, o.did = round(time.monotonic() - self.t0, 1), did

    # -- before the run ----------------------------------------------------------

    def before(self) -> None:
        self.t0 = time.monotonic()
        f = self.cluster.facts
        self._in_service = {n for n, st in self.cluster.node_states().items() if in_service(st)}
        nfs: list[str] = []
        own = f.on_mount(self.remote)  # the run's directory
        if "slow-nfs" in self.outcomes:
            # Its delay on the run's own files only: other users' work keeps the filesystem it had.
            nfs += [self.choice.slow_profile, "--set", f"delay_path={own}/*"]
        if "eio" in self.outcomes:
            if self.target is None:
                self.outcomes["eio"].why = "no SLURM job of the policy run made an output to fail"
            else:
                nfs += ["--fault", f"EIO:op=create|write,path={own}/{self.target[0]},count=1,scope=cluster"]
        if nfs:
            self._prior_nfs = self.faults.active_nfs_profile()
            if nfs[0] == "--fault":
                nfs.insert(0, self._prior_nfs)
            self.cluster.set_nfs_profile(*nfs)
            if "slow-nfs" in self.outcomes:
                self._at("slow-nfs", f"the shared filesystem runs profile {self.choice.slow_profile} for the run, "
                                     "its delay on the run's own directory")
            if "--fault" in nfs:
                self._at("eio", f"the first create or write of {self.target[0]} fails with EIO (once, on any node)")
        if "busy" in self.outcomes:
            load = busy.start(self.cluster, BUSY_MINUTES, leave=f.cpus)
            self._busy = True
            self._at("busy", f"{f.other_user}'s load (job {load.job_id}) holds {load.cpus} of the "
                             f"{f.total_cpus} CPUs, in QOS {busy.QOS}")
        if "slow-nfs" in self.outcomes:
            self._thread(self._measure_lag, ["slow-nfs"])
        self._thread(self.during, [n for n in ("session-lost", "slurmctld-restart", "node-kill", "busy")
                                   if n in self.outcomes])

    def _thread(self, fn: Callable[[], None], faults: list[str]) -> None:
        """`fn` beside the run; an error ends it and is said in the evidence
        of `faults` (after() still undoes everything)."""
        def run() -> None:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - said in the report
                for name in faults:
                    self.outcomes[name].evidence.append(f"minihpc could not go on with it: {clean(str(e), 300)}")
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._threads.append(t)

    def _measure_lag(self) -> None:
        # The probes write in the run's directory (its .minihpc: never compared), where the lag is.
        self.lag = lag.measure(self.cluster, self.sbatch, LAG_SAMPLES, wait_s=LAG_WAIT_S, stop=self.stop.is_set,
                               under=f"{self.remote}/.minihpc")
        self.outcomes["slow-nfs"].evidence += self.lag.evidence

    # -- during the run ------------------------------------------------------------

    def jobs(self) -> list[dict[str, str]]:
        """The run's jobs in the queue: named with the run's ID (the plugin
        names them so; a job the workflow submits itself is not one of them)
        and working in its directory."""
        rid = self.run_id()
        if rid is None:
            return []
        fields = ("JobID", "State", "NodeList", "WorkDir", "Reason", "Name")
        r = self.cluster.sh("squeue --me -h -o '%i|%T|%N|%Z|%r|%j'")
        rows = parse_sacct(r.out, fields) if r.rc == 0 else []
        return [j for j in rows if j["Name"] == rid
                and (j["WorkDir"] == self.remote or j["WorkDir"].startswith(self.remote + "/"))]

    def launched(self, job: str) -> bool:
        """Whether the job's batch step has started on its node (sacct has it)."""
        return f"{job}.batch" in self.cluster.sh(f"sacct -n -P -o JobID -j {job}").out.split()

    def moment(self) -> dict[str, str] | None:
        """The first of the run's jobs running with its batch step started;
        None once the run has ended."""
        while not self.stop.is_set():
            jobs = self.jobs()
            self._note_pending(jobs)
            for j in jobs:
                if j["State"] == "RUNNING" and j["NodeList"] and self.launched(j["JobID"]):
                    return j
            self.stop.wait(POLL_S)
        return None

    def _note_pending(self, jobs: list[dict[str, str]]) -> None:
        if self._busy and "busy" in self.outcomes:
            o = self.outcomes["busy"]
            for j in jobs:
                if j["State"] == "PENDING" and j["Reason"] in ("Priority", "Resources") and j["JobID"] not in o.hit:
                    o.hit.append(j["JobID"])
                    o.evidence.append(f"job {j['JobID']} of the run pending ({j['Reason']}) behind the load")

    def during(self) -> None:
        if "session-lost" in self.outcomes:
            self._hang_up()
        if "slurmctld-restart" in self.outcomes and not self.stop.is_set():
            self._restart()
        if "node-kill" in self.outcomes and not self.stop.is_set():
            self._node_kill()
        while self._busy and not self.stop.is_set():  # the load's effect, noted until it ends with the run
            self._note_pending(self.jobs())
            self.stop.wait(POLL_S)

    def writing(self) -> str | None:
        """An output being written: one the run's Snakemake has marked
        incomplete (.snakemake/incomplete names each by its path in base64)
        that the login node already sees; None if none is, yet."""
        script = ("cd .snakemake/incomplete 2>/dev/null || exit 0; for m in *; do "
                  "f=$(printf %s \"$m\" | tr '_-' '/+' | base64 -d 2>/dev/null) || continue; "
                  "[ -n \"$f\" ] && [ -e \"../../$f\" ] && { printf '%s\\n' \"$f\"; break; }; done; true")
        found = self.cluster.sh(script, workdir=self.remote).out.strip()
        return clean(found, 200) if found else None

    def _hang_up(self) -> None:
        o = self.outcomes["session-lost"]
        job = self.moment()
        if job is None:
            o.why = "the run ended before one of its jobs ran"
            return
        # Better still while one of its outputs is being written (what a lost session leaves incomplete); a
        # workflow whose jobs write only as they end gives no such moment, and is hung up all the same.
        deadline, written = time.monotonic() + WRITING_WAIT_S, None
        while not self.stop.is_set() and time.monotonic() < deadline and not (written := self.writing()):
            self.stop.wait(POLL_S / 2)
        rid, ran = self.run_id(), [j["JobID"] for j in self.jobs()]
        # The run's own Snakemake (it works in the run's directory, or one under it: -d), and what it started
        # on the login node.
        find = (f"r={shlex.quote(self.remote)}; for p in $(pgrep -u \"$(id -u)\" -f {shlex.quote(SNAKEMAKE)}); do "
                "case \"$(readlink /proc/$p/cwd)\" in \"$r\"|\"$r\"/*) echo $p;; esac; done; true")
        with self._lock:
            if self._first_over:
                o.why = "the run ended before its Snakemake could be hung up"
                return
            pids = self.cluster.sh(find).out.split()
            if not pids or not rid:
                o.why = "the run's Snakemake was not found on the login node"
                return
            self.cluster.sh("for p in " + " ".join(pids) + "; do pkill -HUP -P $p; kill -HUP $p; done; true")
            self.hung_up = True
            self.lost_ids.append(rid)
        o.hit = ran
        self._at("session-lost", f"hung up the run's Snakemake (SIGHUP, pid {', '.join(pids)}) while job(s) "
                                 f"{', '.join(ran)} of it were queued or ran"
                                 + (f", {written} being written" if written else "")
                                 + f"; its SLURM run {rid} went on without it")

    def first_run_ended(self) -> None:
        """The first Snakemake has exited: unless it was hung up (and is resumed), the run is over."""
        with self._lock:
            self._first_over = True
            lost = self.hung_up
        if not lost:
            self.after()

    def cancel_lost(self) -> str:
        """Cancel the jobs of the lost sessions (they run on without their Snakemake) and wait until they
        have left the queue; what was done, for the evidence."""
        if not self.lost_ids:
            return ""
        names = ",".join(self.lost_ids)
        self.cluster.sh(f"scancel -u \"$(id -un)\" --name={shlex.quote(names)}")
        deadline = time.monotonic() + LOST_JOBS_S
        while time.monotonic() < deadline:
            left = self.cluster.sh(f"squeue -h -u \"$(id -un)\" --name={shlex.quote(names)} -o %i").out.split()
            if not left:
                return f"cancelled the lost session's jobs (scancel --name={names})"
            time.sleep(1)
        raise MinihpcError(f"the lost session's jobs (SLURM run {names}) were still queued {LOST_JOBS_S} s after "
                           "scancel", "minihpc status; scancel them by hand")

    def _node_kill(self) -> None:
        o = self.outcomes["node-kill"]
        job = self.moment()
        if job is None:
            o.why = "the run ended before another of its jobs ran"
            return
        node = first_node(job["NodeList"])
        hit = [j["JobID"] for j in self.jobs() if j["State"] == "RUNNING" and first_node(j["NodeList"]) == node]
        self.faults.apply("kill", node)
        self._killed = node
        self._stop_busy()  # else the load would hold every CPU left while the node is down
        o.hit = hit or [job["JobID"]]
        self._at("node-kill", f"killed {node} while job(s) {', '.join(o.hit)} of the run ran there")
        t = time.monotonic()
        # Down at once, as a health check would have it: what the profile is proven against is the jobs' end
        # (NODE_FAIL, the same either way), not SlurmdTimeout's 30 s or more of waiting for slurmctld to notice.
        o.evidence.append(self.faults.mark_down(node, "minihpc prove: node-kill"))
        down = self._node_state(node, lambda s: s.startswith("down"), NODE_DOWN_S)
        o.evidence.append(f"{node} {down} in sinfo {time.monotonic() - t:.0f} s after the kill")
        o.evidence.append(self.faults.apply("start", node))
        self._started = True
        back = self._node_state(node, in_service, NODE_BACK_S)
        o.evidence.append(f"{node} {back} in sinfo again {time.monotonic() - t:.0f} s after the kill")

    def _node_state(self, node: str, ok: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.cluster.node_states().get(node, "")
            if ok(state):
                return state
            time.sleep(2)
        raise MinihpcError(f"{node} did not reach the expected state in sinfo within {timeout:.0f} s "
                           f"(it is {self.cluster.node_states().get(node, 'unknown')})", f"minihpc status; "
                                                                                          f"minihpc fault start {node}")

    def _restart(self) -> None:
        o = self.outcomes["slurmctld-restart"]
        job = self.moment()
        if job is None:
            o.why = "the run ended before one of its jobs ran"
            return
        queued = [j["JobID"] for j in self.jobs()]
        self._at("slurmctld-restart", f"restarted slurmctld while job {job['JobID']} of the run ran")
        o.hit = queued
        o.evidence.append(self.faults.apply("restart", "slurmctld"))
        after = self.cluster.sh(f"sacct -n -X -P -o JobID -j {','.join(queued)}").out.split()
        o.evidence.append(f"the run's jobs queued at the restart: {', '.join(queued)}; sacct answers for "
                          f"{len(set(after) & set(queued))} of them after it")

    def _stop_busy(self) -> None:
        if self._busy:
            n = busy.stop(self.cluster)
            self._busy = False
            self.outcomes["busy"].evidence.append(f"the load ended at {time.monotonic() - self.t0:.0f} s into the "
                                                  f"run ({n} of its tasks cancelled)")

    # -- after the run -------------------------------------------------------------

    def after(self) -> list[str]:
        """Undo every fault, whatever happened, once (right after Snakemake
        exits, before the run's report is read); what could not be undone."""
        if self._undone is None:
            self._undone = self._undo()
        return self._undone

    def _undo(self) -> list[str]:
        self.stop.set()
        end = time.monotonic()
        for o in self.outcomes.values():
            if o.at_s is not None:
                o.to_verdict_s = round(end - self.t0 - o.at_s, 1)
        problems = []
        for t in self._threads:
            t.join(timeout=NODE_DOWN_S + NODE_BACK_S + 120)
        steps: list[tuple[str, Callable[[], object]]] = [("the busy load", self._stop_busy),
                                                         ("the lost session's jobs", self.cancel_lost)]
        if self._killed and not self._started:
            node = self._killed
            steps.append((f"starting {node}", lambda: self.faults.apply("start", node)))
        if self._prior_nfs is not None:
            steps.append(("the shared filesystem's profile", lambda: self.cluster.set_nfs_profile(self._prior_nfs)))
        steps.append(("the compute nodes", self._nodes_back))
        for what, step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001 - the next undo still runs
                problems.append(f"{what}: {clean(str(e), 300)}")
        try:
            if busy.running(self.cluster):
                problems.append(f"the busy load: {self.cluster.facts.other_user}'s tasks still queued")
        except MinihpcError as e:
            problems.append(f"the busy load: {clean(str(e), 300)}")
        return problems

    def _nodes_back(self) -> None:
        """Every compute node in service before the run in service again (a
        killed one is back only once its slurmd registers)."""
        deadline = time.monotonic() + NODE_BACK_S
        while (out := {n: st for n, st in self.cluster.node_states().items()
                       if n in self._in_service and not in_service(st)}):
            if time.monotonic() > deadline:
                raise MinihpcError(f"not back in service {NODE_BACK_S} s after the run: "
                                   + ", ".join(f"{n} {s}" for n, s in out.items()), "minihpc status")
            time.sleep(2)


def first_node(nodelist: str) -> str:
    """The first node of a Slurm node list (c1, c[1-2] or c[2,4]: c1, c1, c2)."""
    m = re.fullmatch(r"([^\[,]+)(?:\[(\d+)[^\]]*\])?.*", nodelist)
    return (m.group(1) + (m.group(2) or "")) if m else nodelist


def in_service(state: str) -> bool:
    """A node state (sinfo %t) that takes jobs: not down, drained or failing."""
    return state.rstrip("~#!%$@^-") in ("idle", "mix", "alloc", "comp")  # "*": not responding


def owns(fault: str, job, eio_jobs: set[str]) -> bool:
    """Whether a job the fault hit was lost to that fault, by how it ended:
    one lost job is one fault's (a job the run cancelled as it failed is no
    fault's; a lost session's job is that fault's, cancelled or not, until
    the resume has done its work)."""
    if fault == "session-lost":
        return job.state != "COMPLETED"
    if job.state.startswith("CANCELLED"):
        return False
    return {"node-kill": job.state == "NODE_FAIL",
            "eio": job.job_id in eio_jobs,
            "slurmctld-restart": job.state == "FAILED" and job.job_id not in eio_jobs,
            "busy": job.state in ("TIMEOUT", "PREEMPTED", "DEADLINE")}.get(fault, False)


def judge(inj: Injector, report: Report, output: str, differing: list[tuple[str, str]], conf: dict,
          failed_by_eio: list[str]) -> list[Outcome]:
    """Each fault's verdict from the run: its report (sacct), Snakemake's
    output, the files made that differ from the reference ((path, rule): a
    file missing is no fault's changed output, but a lost job's), and the
    failed jobs whose log shows the EIO. A job a fault hit that the run's
    report does not hold counts as lost: nothing shows it was done again."""
    done = {(j.rule, j.wildcards) for j in report.jobs if j.state == "COMPLETED"}
    by_id = {j.job_id: j for j in report.jobs}
    eio_jobs = set(failed_by_eio)
    retries = setting(conf, "retries", setting(conf, "restart-times", 0)) or 0
    out = []
    for o in inj.outcomes.values():
        if o.verdict == FAILED:  # judged as it happened (a resume refused)
            out.append(o)
            continue
        if o.fault == "eio" and o.at_s is not None:
            o.hit = failed_by_eio
            if not failed_by_eio:
                o.at_s, o.verdict = None, NOT_APPLIED
                o.why = f"no job's write of {inj.target[0]} failed (the rule never fired)" if inj.target else o.why
        if o.at_s is None:
            out.append(o)
            continue
        hit = [by_id[i] for i in o.hit if i in by_id]
        unknown = [i for i in o.hit if i not in by_id]
        lost_jobs = [j for j in hit if (j.rule, j.wildcards) not in done and owns(o.fault, j, eio_jobs)]
        rules = {j.rule for j in hit}
        whole_run = o.fault in ("busy", "slow-nfs")
        said = MISSING_FILES.search(output) if o.fault == "slow-nfs" else None
        if said:
            o.verdict, o.why = FAILED, said.group(0)
            wait = inj.lag.latency_wait if inj.lag else None
            o.fix = f"`latency-wait: {wait}`" if wait else "a `latency-wait` above the filesystem's lag"
        elif unknown:
            o.verdict = FAILED
            o.why = f"job(s) {', '.join(unknown)} it hit are not among the run's jobs in sacct: nothing shows their " \
                    "work was done again"
        elif lost_jobs:
            o.verdict = FAILED
            o.why = "; ".join(f"job {j.job_id} ({j.rule}{'[' + j.wildcards + ']' if j.wildcards else ''}) ended "
                              f"{j.state}{' on ' + j.node if j.node else ''}" + (f": {j.error}" if j.error else "")
                              for j in lost_jobs)[:600]
            o.why += f"; never run again (retries: {retries})"
            o.fix = FIX.get(o.fault, "")
        elif [p for p, r in differing if whole_run or r in rules]:
            o.verdict = CHANGED
            o.why = "differs from the reference: " + ", ".join(p for p, r in differing if whole_run or r in rules)[:400]
        else:
            o.verdict = SURVIVED
            o.why = (f"every job it hit ({len(hit)}) was done again; the outputs are the reference's" if hit else
                     "the outputs are the reference's")
            if report.exit_code != 0:
                o.why += " (the run failed for another reason)"
        out.append(o)
    return out
