"""What the class's live page shows, gathered from the cluster read-only.

Two sources, as the page's viewers have two kinds of rights:
- the SLURM REST API (slurmrestd), GET only: nodes, partitions and QOS read
  with the token of PAGE_USER, a user with no Slurm association (it can
  submit, cancel or change nothing, and owns no job); a learner's own jobs
  read with that learner's token, so PrivateData decides what they see, as
  it does for squeue in their shell;
- the cluster client (as the instructor's own commands): the queue by user
  and the timeline of recent jobs (root's squeue and sacct: every user's), the
  NFS profile and faults in force, each node's scratch use.

One Collector serves every viewer: what all see is gathered once per PERIOD
by a thread of its own; a learner's jobs on demand, at most once per PERIOD.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from minihpc import NAME, rest, timeline
from minihpc.cluster import ROOT_USER, Cluster
from minihpc.errors import MinihpcError
from minihpc.transport import containers

# The REST API's reader for the page: a system user on every node (cluster/Dockerfile) with no association.
PAGE_USER = "minihpc-page"
PERIOD = 2.0  # seconds between refreshes of what every viewer sees
SLOW_PERIOD = 10.0  # scratch (a process on every node) and the timeline (sacct) less often
TOKEN_LIFESPAN = 600  # seconds; a token is renewed at half its life
WINDOW = 30 * 60  # the timeline's last half hour
QUEUE_FIELDS = ("JobID", "User", "State", "Reason", "NodeList", "Name")
CONTROLLER = "slurmctld"  # where root's squeue and sacct run


def num(x) -> int | None:
    """A number in either API's answer: plain (v0.0.38) or {set, infinite, number} (newer); None if unset."""
    if isinstance(x, dict):
        return None if not x.get("set", True) or x.get("infinite") else num(x.get("number"))
    return int(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def words(x) -> list[str]:
    """A state or flag field: a list of words (newer APIs) or one string (v0.0.38)."""
    if isinstance(x, list):
        return [str(w) for w in x]
    return str(x).split() if x else []


def text(x) -> str:
    return ",".join(words(x)) if isinstance(x, list) else str(x or "")


def node_row(n: dict) -> dict:
    return {"name": text(n.get("name")), "state": " ".join(words(n.get("state"))).lower(),
            "cpus": num(n.get("cpus")), "alloc_cpus": num(n.get("alloc_cpus")),
            "memory_mb": num(n.get("real_memory")), "alloc_memory_mb": num(n.get("alloc_memory")),
            "partitions": text(n.get("partitions")), "reason": text(n.get("reason"))}


def partition_row(p: dict) -> dict:
    """A partition from either API: nested (nodes.configured, maximums.time, qos.allowed) or flat (v0.0.38)."""
    nodes, qos = p.get("nodes"), p.get("qos")
    limits = p.get("maximums") or {}
    return {"name": text(p.get("name")),
            "nodes": text(nodes.get("configured") if isinstance(nodes, dict) else nodes),
            "state": " ".join(words((p.get("partition") or {}).get("state") or p.get("state"))).lower(),
            "max_time_min": num(limits.get("time") if limits else p.get("max_time_limit")),
            "qos": text(qos.get("allowed") if isinstance(qos, dict) else p.get("allowed_qos")) or "any"}


def qos_row(q: dict) -> dict:
    per_job = (((q.get("limits") or {}).get("max") or {}).get("wall_clock") or {}).get("per") or {}
    return {"name": text(q.get("name")), "priority": num(q.get("priority")),
            "max_wall_min": num(per_job.get("job") if per_job else None), "description": text(q.get("description"))}


def job_row(j: dict) -> dict:
    """A job from /slurm/ (slurmctld's: job_state, ...) or /slurmdb/ (state.current, time.*)."""
    t = j.get("time") or {}
    st = j.get("state")
    state = words(st.get("current")) if isinstance(st, dict) else words(j.get("job_state"))
    cpus = num(j.get("cpus")) or num((j.get("required") or {}).get("CPUs"))
    comment = j.get("comment")
    comment = text(comment.get("job") if isinstance(comment, dict) else comment)
    return {"id": str(num(j.get("job_id")) or ""), "name": text(j.get("name")), "user": rest.job_owner(j),
            "rule": timeline.rule_name(comment) or text(j.get("name")),
            "state": (state[0] if state else "").upper(), "reason": text(j.get("state_reason")),
            "nodes": text(j.get("nodes")), "cpus": cpus or 1,
            "submit": num(j.get("submit_time")) or num(t.get("submission")),
            "start": num(j.get("start_time")) or num(t.get("start")),
            "end": num(j.get("end_time")) or num(t.get("end"))}


def faults_in_force(ps_lines: list[str], nodes: list[dict], nfs_text: str) -> list[dict]:
    """What is broken now, each as {what, how}: containers not running or cut
    off the network (docker ps: SERVICE STATE NETWORKS), nodes Slurm holds
    down or drained (with their reason), the shared filesystem's fault rules."""
    out = []
    for line in ps_lines:
        service, state, nets = (line.split("\t") + ["", ""])[:3]
        if state != "running":
            out.append({"what": service, "how": f"container {state} (minihpc fault start {service})"})
        elif not nets.strip():
            out.append({"what": service, "how": f"cut off the network (minihpc fault reconnect {service})"})
    for n in nodes:
        if any(w in n["state"] for w in ("down", "drain", "fail", "not_responding")):
            why = f" ({n['reason']})" if n["reason"] else ""
            out.append({"what": n["name"], "how": f"Slurm: {n['state']}{why}"})
    for line in nfs_text.splitlines():
        if line.strip().startswith("fault:"):
            out.append({"what": "/shared", "how": "NFS " + line.strip()})
    return out


def nfs_profile(nfs_text: str) -> dict:
    """`minihpc-nfs show`'s profile: its name and its lines."""
    lines = [x.strip() for x in nfs_text.splitlines() if x.strip()]
    first = lines[0].split() if lines else []
    return {"name": first[1] if len(first) > 1 and first[0] == "profile:" else "unknown", "lines": lines}


@dataclass
class Token:
    value: str = ""
    made: float = float("-inf")


@dataclass
class Shared:
    """What every viewer sees, and when each part was last gathered (epoch seconds)."""
    nodes: list[dict] = field(default_factory=list)
    partitions: list[dict] = field(default_factory=list)
    qos: list[dict] = field(default_factory=list)
    queue: list[dict] = field(default_factory=list)  # every user's jobs, root's squeue
    nfs: dict = field(default_factory=lambda: {"name": "unknown", "lines": []})
    faults: list[dict] = field(default_factory=list)
    scratch: list[dict] = field(default_factory=list)
    bars: list[dict] = field(default_factory=list)
    updated: float = 0.0
    slow_updated: float = 0.0
    took_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class Collector:
    def __init__(self, client: Cluster, period: float = PERIOD, slow_period: float = SLOW_PERIOD,
                 clock: Callable[[], float] = time.time, tick: Callable[[], None] | None = None) -> None:
        self.client, self.facts, self.tick = client, client.facts, tick
        self.period, self.slow_period, self.clock = period, slow_period, clock
        self.api = rest.api(self.facts)
        self.shared = Shared()
        self._tokens: dict[str, Token] = {}
        self._mine: dict[str, tuple[float, list[dict], list[str]]] = {}
        self._lock = threading.Lock()
        self._user_locks: dict[str, threading.Lock] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop ----------------------------------------------------------------

    def start(self) -> None:
        self.refresh()  # the first page has data
        self._thread = threading.Thread(target=self._run, name="page-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, self.period - self.shared.took_s)):
            try:
                self.refresh()
                if self.tick is not None:
                    self.tick()
            except Exception as e:  # noqa: BLE001 (the page lives on and says what failed)
                with self._lock:
                    self.shared.errors = [f"collecting: {type(e).__name__}: {e}"]

    def refresh(self) -> None:
        """Gather what every viewer sees (the slow parts when due); a part that fails keeps its last
        value and says why in errors."""
        t0 = time.monotonic()
        s, errors = self.shared, []
        slow = self.clock() - s.slow_updated >= self.slow_period

        def part(name: str, fn: Callable[[], object]) -> None:
            try:
                setattr(s, name, fn())
            except (MinihpcError, OSError, ValueError, KeyError, TypeError, subprocess.SubprocessError) as e:
                errors.append(f"{name}: {getattr(e, 'what', e)}")

        part("nodes", lambda: [node_row(n) for n in self._rest("nodes", "/slurm/{v}/nodes", PAGE_USER)])
        part("partitions", lambda: [partition_row(p) for p in self._rest("partitions", "/slurm/{v}/partitions",
                                                                         PAGE_USER)])
        part("qos", lambda: [qos_row(q) for q in self._rest("qos", "/slurmdb/{v}/qos", PAGE_USER)])
        part("queue", self._queue)
        nfs_text = ""
        try:
            nfs_text = self._root("minihpc-nfs show", self.facts.login)
            s.nfs = nfs_profile(nfs_text)
        except (MinihpcError, subprocess.SubprocessError) as e:
            errors.append(f"nfs: {getattr(e, 'what', e)}")
        ps = containers.ps("{{.Label \"com.docker.compose.service\"}}\t{{.State}}\t{{.Networks}}")
        part("faults", lambda: faults_in_force(ps.stdout.splitlines() if ps.returncode == 0 else [], s.nodes,
                                               nfs_text))
        if slow:
            part("scratch", self._scratch)
            part("bars", self._bars)
            s.slow_updated = self.clock()
        with self._lock:
            s.errors, s.updated, s.took_s = errors, self.clock(), time.monotonic() - t0

    # -- sources -----------------------------------------------------------------

    def _token(self, user: str) -> str:
        lock = self._user_locks.setdefault(user, threading.Lock())
        with lock:
            t = self._tokens.setdefault(user, Token())
            if self.clock() - t.made > TOKEN_LIFESPAN / 2:
                t.value, t.made = rest.token(self.client, user, TOKEN_LIFESPAN), self.clock()
            return t.value

    def _rest(self, key: str, path: str, user: str) -> list[dict]:
        a = rest.get(self.facts, path.format(v=self.api), user, self._token(user))
        if not a.ok:
            raise MinihpcError(f"GET {path.format(v=self.api)} as {user}: {a.status} {'; '.join(a.errors)[:200]}")
        body = a.body or {}
        # v0.0.38 names its QOS list "QOS".
        return [x for x in body.get(key, body.get(key.upper(), [])) if isinstance(x, dict)]

    def _root(self, script: str, node: str | None = None) -> str:
        r = self.client.root(script, node=node, timeout=30)
        if r.rc != 0:
            raise MinihpcError(f"{script.split()[0]} failed on {node or self.facts.login}: {r.out.strip()[-200:]}")
        return r.out

    def _queue(self) -> list[dict]:
        # A delimiter no job name can guess, and the name (the user's words) last: a row is what splits in six.
        # On the controller, where no user has a process: the delimiter is in the command line.
        delimiter = f":minihpc-{secrets.token_hex(8)}:"
        out = self._root(f"squeue -h -a -o '{delimiter.join(('%i', '%u', '%T', '%r', '%N', '%j'))}'", CONTROLLER)
        rows = (line.split(delimiter, len(QUEUE_FIELDS) - 1) for line in out.splitlines())
        return [dict(zip(QUEUE_FIELDS, r, strict=True)) for r in rows if len(r) == len(QUEUE_FIELDS)]

    def _scratch(self) -> list[dict]:
        """Each node's scratch filesystem's size and use (df: no walk of what users put there)."""
        rows = []
        for node in self.facts.client_nodes:
            try:
                fields = self._root(f"df -P -m {self.facts.scratch} | tail -n 1", node).split()
                rows.append({"node": node, "size_mb": int(fields[1]), "used_mb": int(fields[2]),
                             "free_mb": int(fields[3])})
            except (MinihpcError, IndexError, ValueError):
                rows.append({"node": node, "error": "not readable now"})
        return rows

    def _bars(self) -> list[dict]:
        rows = self.client.sacct(f"now-{WINDOW // 60}minutes", timeline.FIELDS, all_users=True, user=ROOT_USER,
                                 node=CONTROLLER)
        return [{k: v for k, v in vars(b).items() if k != "lanes"} for b in timeline.bars_of(rows, self.facts.lab_user)]

    # -- views -----------------------------------------------------------------------

    def mine(self, learner: str, joined: float = 0.0) -> tuple[list[dict], list[str]]:
        """A learner's jobs as their own token shows them (queued, and ended in the timeline's window),
        gathered at most once per period: theirs only (by owner, and since they `joined`: an earlier
        learner of that name had the same uid), whatever the API answered."""
        lock = self._user_locks.setdefault(f"jobs:{learner}", threading.Lock())
        with lock:
            at, jobs, errors = self._mine.get(learner, (float("-inf"), [], []))
            if self.clock() - at < self.period:
                return jobs, errors
            errors = []
            try:
                now = {j["id"]: j for j in map(job_row, self._rest("jobs", "/slurm/{v}/jobs", learner))}
                # Slurm's own time words: every API version parses them (v0.0.38 takes no epoch).
                since = f"now-{WINDOW // 60}minutes"
                ended = [job_row(j) for j in self._rest("jobs", f"/slurmdb/{{v}}/jobs?start_time={since}", learner)]
                jobs = [j for j in [*now.values(), *(j for j in ended if j["id"] not in now)]
                        if j["user"] == learner and (j["submit"] or 0) >= joined]
            except MinihpcError as e:
                errors.append(f"your jobs: {e.what}")
            self._mine[learner] = (self.clock(), jobs, errors)
            return jobs, errors

    def view(self, viewer: str | None, joined: float = 0.0) -> dict:
        """The page's data for the instructor (viewer None) or a learner (who `joined` then): a learner's
        jobs in detail (their own token's view), everyone else's as counts only, and no other user's
        name or words anywhere (what could not be read is said without root's output)."""
        with self._lock:
            s = self.shared
            base = {"cluster": NAME, "slurm": self.facts.slurm, "viewer": viewer or "instructor",
                    "updated": s.updated, "took_s": round(s.took_s, 3), "period_s": self.period,
                    "nodes": s.nodes, "partitions": s.partitions, "qos": s.qos, "nfs": s.nfs, "faults": s.faults,
                    "scratch": s.scratch, "window_s": WINDOW, "errors": list(s.errors)}
            queue, bars = list(s.queue), list(s.bars)
        by_user: Counter[tuple[str, str]] = Counter((j["User"], j["State"]) for j in queue)
        if viewer is None:
            users = sorted({u for u, _ in by_user})
            base["queue"] = [{"user": u, "running": by_user[u, "RUNNING"], "pending": by_user[u, "PENDING"]}
                             for u in users]
            base["jobs"] = [{"id": j["JobID"], "user": j["User"], "state": j["State"], "reason": j["Reason"],
                             "nodes": j["NodeList"], "name": j["Name"]} for j in queue
                            if j["State"] in ("RUNNING", "PENDING")]
            base["bars"] = bars
            return base
        jobs, errors = self.mine(viewer, joined)
        if base["errors"]:
            base["errors"] = ["some of the cluster's state could not be read just now (the instructor's page "
                              "says what)"]
        others = [j for j in queue if j["User"] != viewer]
        base["others"] = {"running": sum(j["State"] == "RUNNING" for j in others),
                          "pending": sum(j["State"] == "PENDING" for j in others)}
        base["jobs"] = [j for j in jobs if j["state"] in ("RUNNING", "PENDING")]
        # A running job's end_time is when its time limit would end it: not an end yet.
        base["bars"] = [{"job_id": j["id"], "user": viewer, "rule": j["rule"], "node": j["nodes"],
                         "cpus": j["cpus"], "submit": j["submit"] or 0,
                         "start": None if j["state"] == "PENDING" else j["start"] or None,  # (its expected start)
                         "end": None if j["state"] in ("RUNNING", "PENDING") else j["end"] or None,
                         "state": j["state"]} for j in jobs]
        base["errors"] += errors
        return base


def dumps(view: dict) -> bytes:
    return json.dumps(view, separators=(",", ":"), default=str).encode()
