"""A picture of a run, drawn from sacct: one lane per node and CPU slot, one
bar per job coloured by rule, the time each job pended before it started, and
below them the queue (jobs pending) and the CPUs in use against the cluster's.

Jobs are selected by run (the SLURM executor plugin names every job of a run
by its run ID; the last run by default) or by a time window. The lanes are
the node's CPUs as Slurm counts them; without CPU binding (task/none) a job
is drawn on the lowest lanes of its node that are free when it starts.

Drawn on the host with matplotlib (`pip install 'minihpc[timeline]'`), which
only this module needs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from minihpc.cluster import ROOT_USER, Cluster
from minihpc.errors import BadInput, MinihpcError

FIELDS = ("JobID", "JobName", "User", "Comment", "NodeList", "AllocCPUS", "Submit", "Start", "End", "State")
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What sacct's -S/-E take that we let through: now[-N<unit>] or an ISO date/time.
WHEN = re.compile(r"now(-\d+(seconds|minutes|hours|days|weeks))?|\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d)?)?")
# How far back "the last run" is looked for.
LAST_RUN_WITHIN = "now-7days"
FAILED_STYLE = {"hatch": "////", "edgecolor": "#b00020"}


@dataclass
class Bar:
    job_id: str
    user: str
    rule: str
    node: str
    cpus: int
    submit: float
    start: float | None
    end: float | None
    state: str
    lanes: list[int] = field(default_factory=list)


def need_matplotlib():
    """matplotlib's pyplot (Agg: no display), or a clear error before anything starts."""
    try:
        import matplotlib
    except ImportError:
        raise BadInput("drawing a timeline needs matplotlib, which is not installed",
                       "pip install 'minihpc[timeline]'; in a checkout, .venv/bin/python -m minihpc timeline "
                       "(make test-unit makes that venv)"
                       ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # Text stays text in the SVG: searchable, and editable on a slide.
    plt.rcParams["svg.fonttype"] = "none"
    return plt


def check_when(flag: str, value: str | None) -> None:
    if value is not None and not WHEN.fullmatch(value):
        raise BadInput(f"{flag} {value!r} is not a time sacct takes here",
                       f"give now, now-<N>minutes|hours|days, or a date/time such as {flag} 2026-11-29T09:00")


def check_run(run: str | None) -> None:
    if run is not None and not RUN_ID.fullmatch(run):
        raise BadInput(f"--run {run!r} is not a SLURM run ID",
                       "give the UUID Snakemake printed as 'SLURM run ID: ...' (or leave --run out for the last run)")


def stamp(s: str) -> float | None:
    """A sacct time as a timestamp; None for Unknown or None (not started, not ended)."""
    try:
        return datetime.fromisoformat(s).timestamp()
    except ValueError:
        return None


def rule_name(comment: str) -> str:
    """The rule a job ran, from the comment the plugin gives each job: rule_<rule>[_wildcards_...]
    (a group job rule_<group>_<rules>); "" if it is no such comment."""
    return comment.removeprefix("rule_").partition("_wildcards_")[0] if comment.startswith("rule_") else ""


def _rule(comment: str, user: str, me: str) -> str:
    if user != me:
        return f"{user}'s jobs"
    return rule_name(comment) or "(no rule)"


def select(cluster: Cluster, run: str | None = None, since: str | None = None, until: str | None = None,
           all_users: bool = False) -> tuple[list[Bar], str]:
    """The jobs to draw and a title: a run's (the last if neither run nor since
    is given) or a window's, the lab user's (with all_users, everyone's jobs
    in the same time span too)."""
    f = cluster.facts
    rows = cluster.sacct(since or LAST_RUN_WITHIN, FIELDS, until=until)
    if since is None:
        runs = [r for r in rows if RUN_ID.fullmatch(r["JobName"])]
        if run is None and runs:
            run = max(runs, key=lambda r: r["Submit"])["JobName"]
        if run is None:
            raise MinihpcError(f"no run of {f.lab_user} went to SLURM in the last 7 days",
                               "run a workflow first (minihpc run PATH), or give a window with --since")
        rows = [r for r in rows if r["JobName"] == run]
        if not rows:
            raise MinihpcError(f"no SLURM job of run {run} in the last 7 days", "check the run ID, or use --since")
        title = f"run {run}"
    else:
        title = f"{since} to {until or 'now'}"
    if all_users and rows:
        lo = min(r["Submit"] for r in rows)
        hi = max((r["End"] for r in rows if stamp(r["End"])), default=None)
        mine = {r["JobID"] for r in rows}
        # Everyone's: root's view (each user sees only their own jobs: PrivateData).
        rows += [r for r in cluster.sacct(lo, FIELDS, until=hi, all_users=True, user=ROOT_USER)
                 if r["JobID"] not in mine]
    bars = bars_of(rows, f.lab_user)
    if not bars:
        raise MinihpcError(f"no SLURM job in {title}", "widen the window, or run a workflow first")
    return bars, title


def bars_of(rows: list[dict[str, str]], me: str) -> list[Bar]:
    """sacct's rows (FIELDS) as bars: `me`'s jobs named by rule, others' by whose they are."""
    return [Bar(r["JobID"], r["User"], _rule(r["Comment"], r["User"], me), r["NodeList"], int(r["AllocCPUS"] or 1),
                stamp(r["Submit"]) or 0.0, stamp(r["Start"]), stamp(r["End"]), r["State"].split()[0]) for r in rows]


def assign_lanes(bars: list[Bar], cpus: int) -> None:
    """Put each started job on the lowest free CPU lanes of its node (sacct's
    times are whole seconds: a lane freed in the second a job starts is free)."""
    free_at: dict[str, list[float]] = defaultdict(lambda: [float("-inf")] * cpus)
    for b in sorted((b for b in bars if b.start is not None), key=lambda b: (b.start, b.job_id)):
        lanes, start = free_at[b.node], b.start
        free = [i for i in range(cpus) if lanes[i] <= start]
        # More CPUs than free lanes (whole-second times): the ones freed soonest.
        busy = sorted((i for i in range(cpus) if lanes[i] > start), key=lambda i: lanes[i])
        b.lanes = sorted((free + busy)[:min(b.cpus, cpus)])
        for i in b.lanes:
            lanes[i] = b.end if b.end is not None else float("inf")


def draw(bars: list[Bar], nodes: list[str], cpus: int, title: str, out: Path) -> list[Path]:
    """Write OUT.png and OUT.svg; returns their paths."""
    plt = need_matplotlib()
    now = datetime.now().timestamp()
    t0 = min(b.submit for b in bars)
    assign_lanes(bars, cpus)
    lane_y = {(n, i): k for k, (n, i) in enumerate((n, i) for n in nodes for i in range(cpus))}
    rules = sorted({b.rule for b in bars if not b.rule.endswith("'s jobs")})
    others = sorted({b.rule for b in bars if b.rule.endswith("'s jobs")})
    palette = plt.get_cmap("tab10" if len(rules) <= 10 else "tab20")
    colour = {r: palette(i % palette.N) for i, r in enumerate(rules)} | {o: "#9e9e9e" for o in others}

    fig, (top, low) = plt.subplots(2, 1, sharex=True, figsize=(13, 2.5 + 0.5 * len(lane_y)),
                                   gridspec_kw={"height_ratios": [max(3, len(lane_y)), 2]})
    failed_drawn = False
    for b in bars:
        if b.start is None or (b.node, b.lanes[0] if b.lanes else 0) not in lane_y:
            continue
        end = b.end if b.end is not None else now
        failed = b.state not in ("COMPLETED", "RUNNING")
        for lane in b.lanes:
            y = lane_y[(b.node, lane)]
            top.barh(y, max(end - b.start, 0.3), left=b.start - t0, height=0.7, color=colour[b.rule],
                     **(FAILED_STYLE if failed else {"edgecolor": "white"}), linewidth=0.6)
            # The wait: a thin line from submission to start, on the lane's upper edge.
            if b.start - b.submit >= 1:
                top.plot([b.submit - t0, b.start - t0], [y - 0.42, y - 0.42], color=colour[b.rule], lw=1,
                         alpha=0.7, solid_capstyle="butt")
                top.plot([b.submit - t0], [y - 0.42], marker="|", color=colour[b.rule], ms=5, alpha=0.7)
        failed_drawn |= failed
    top.set_yticks(list(lane_y.values()), [f"{n} cpu{i}" for n, i in lane_y])
    top.set_ylim(len(lane_y) - 0.5, -0.7)
    top.set_ylabel("node and CPU slot")
    top.set_title(f"minihpc timeline: {title} ({len(bars)} jobs; {len(nodes)} nodes x {cpus} CPUs)")
    top.grid(axis="x", alpha=0.3)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Patch(color=colour[r], label=r) for r in [*rules, *others]]
    handles.append(Line2D([], [], color="black", lw=1, marker="|", label="waiting in the queue"))
    if failed_drawn:
        handles.append(Patch(facecolor="white", label="ended not COMPLETED", **FAILED_STYLE))
    top.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, title="rule")

    # The queue: pending jobs and CPUs in use over time, sampled on every event.
    events = sorted({t for b in bars for t in (b.submit, b.start, b.end) if t is not None} | {now})
    span = [t for t in events if t <= max(b.end or now for b in bars)]
    pending = [sum(1 for b in bars if b.submit <= t < (b.start or now)) for t in span]
    busy = [sum(len(b.lanes) for b in bars if b.start is not None and b.start <= t < (b.end or now)) for t in span]
    xs = [t - t0 for t in span]
    low.step(xs, pending, where="post", color="#d95f02", label="jobs pending")
    low.step(xs, busy, where="post", color="#1b9e77", label="CPUs in use")
    low.axhline(len(lane_y), color="#1b9e77", ls="--", lw=1, label=f"CPUs in the cluster ({len(lane_y)})")
    low.set_ylabel("jobs / CPUs")
    low.set_xlabel("seconds since the first submission")
    low.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
    low.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def timeline(cluster: Cluster, out: Path, run: str | None = None, since: str | None = None,
             until: str | None = None, all_users: bool = False) -> tuple[list[Path], int]:
    """Select, then draw: the files written and the number of jobs drawn."""
    bars, title = select(cluster, run, since, until, all_users)
    return draw(bars, list(cluster.facts.nodes), cluster.facts.cpus, title, out), len(bars)
