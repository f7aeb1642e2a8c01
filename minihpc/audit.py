"""The profile audit of `minihpc prove`: the profile's settings against what
the run through it showed, not guesses.

- memory and time: each rule's requests against its jobs' MaxRSS and
  Elapsed; a rule killed for memory or time fails, with the value that fits
  (and its headroom), or, killed at every request, one that grows with the
  attempt; a kill a later attempt survived, and a request far above the
  need, are notes;
- rules whose jobs take less than SLURM's own overhead for a job (Snakemake
  starting in the job, and the plugin's first status check): candidates for
  `localrules` or a group, of as many as fit one node;
- jobs sbatch refused: one asking more than any node has (a group too large
  for a node, say) names the largest node;
- `jobs` against the QOS's submit limit; `retries`; the logs the plugin
  deletes; rules the profile did not send to SLURM; the partition and account
  in use.

Each check says what was seen and, where the profile should change, the
setting; `suggest()` turns them into the profile that would pass.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from minihpc.cluster import sacct_kib
from minihpc.lag import Lag

OK, FINDING, NOTE = "ok", "finding", "note"
HEADROOM = 1.5  # a suggested request: the largest use seen, times this
MEM_STEP_MB = 100
OVER_REQUEST = 4  # a request above this many times the use is a note
MIN_SUGGESTED_MB = 256
# The plugin's wait before a job's first status check (profiles/slurm sets
# it; the plugin's own default is 40 s): a job is never seen done sooner.
PLUGIN_FIRST_CHECK_S = 40
# What a job whose rule does nothing takes in sacct's Elapsed: Snakemake
# starting inside the job (5 s on minihpc: tests/workflows/prove's `where`,
# which runs `hostname`, 2026-12-06). Part of every job's Elapsed, and of
# SLURM's overhead as a workflow pays it.
JOB_STEP_S = 5
# Snakemake's own --latency-wait, when the profile sets none.
LATENCY_WAIT_S = 5


@dataclass
class Check:
    area: str
    verdict: str  # OK, FINDING (fails the proof) or NOTE
    seen: str  # what the run showed
    fix: str = ""  # the setting that would pass
    rule: str = ""


@dataclass
class Audit:
    checks: list[Check] = field(default_factory=list)
    # What suggest() changes in the profile: key -> value; set-resources per rule.
    changes: dict = field(default_factory=dict)

    def add(self, *args, **kwargs) -> None:
        self.checks.append(Check(*args, **kwargs))


def load_profile(profile: Path) -> dict:
    for name in ("config.v8+.yaml", "config.yaml", "profile.yaml"):
        if (profile / name).is_file():
            data = yaml.safe_load((profile / name).read_text()) or {}
            return data if isinstance(data, dict) else {}
    return {}


def setting(conf: dict, key: str, default=None):
    """A profile key as Snakemake reads it: dashes or underscores."""
    return conf.get(key, conf.get(key.replace("-", "_"), default))


def mib(size: str) -> float:
    return sacct_kib(size) / 1024


def elapsed_limit_s(limit: str) -> int | None:
    """sacct's Timelimit ([D-]HH:MM:SS or MM:SS) in seconds; None if unlimited."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", limit.strip())
    if not m:
        return None
    d, h, mi, s = (int(x or 0) for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


# What the SLURM plugin says when sbatch refuses a job, inside Snakemake's
# "Error in rule|group NAME:" block (snakemake-executor-plugin-slurm).
# ([ \t]*, not \s*: the output is the workflow's, and \s* under re.M is quadratic on blank lines;
# the lines skipped never start the next block.)
REFUSED = re.compile(r"^[ \t]*Error in (rule|group) ([\w.-]+):\n(?:(?![ \t]*Error in )[^\n]*\n){0,8}?"
                     r"[^\n]*SLURM sbatch failed\. The error message was '([^'\n]*)", re.M)
# A group's job that failed without ever being a SLURM job: the plugin 2.8.0
# says only "message: Error in group NAME" when sbatch refuses a group.
GROUP_LOST = re.compile(r"^[ \t]*message: Error in group ([\w.-]+)[ \t]*$", re.M)
# A group's members, as Snakemake lists them when it submits the group: indented, each
# with its "Shell command:" line (not indented).
GROUP_JOB = re.compile(r"^(?:\[[^\]]*\] )?Group job ([\w.-]+) \(jobs in lexicogr\. order\):\n"
                       r"((?:(?:[ \t][^\n]*|Shell command:[^\n]*)?\n)*)", re.M)
# sbatch's words for a job no node (or partition) can hold.
TOO_BIG = ("Requested node configuration is not available", "can not be satisfied",
           "Memory required by task is not available", "More processors requested than permitted",
           "Node count specification invalid")


@dataclass
class Refusal:
    name: str  # "rule NAME" or "group NAME"
    said: str  # sbatch's words, when Snakemake's output has them
    mem_mb: int = 0  # a lost group's members' memory and threads, added up (its job runs them side by side)
    threads: int = 0


def refused(output: str) -> list[Refusal]:
    """Each job sbatch refused, from Snakemake's output: with sbatch's words,
    or a group that never became a SLURM job, with its members' requests."""
    found = {(f"{m[1]} {m[2]}"): Refusal(f"{m[1]} {m[2]}", m[3].strip()) for m in REFUSED.finditer(output)}
    members = {m[1]: m[2] for m in GROUP_JOB.finditer(output)}
    for group in dict.fromkeys(GROUP_LOST.findall(output)):
        if f"group {group}" in found:
            continue
        # Each member: its memory, and its threads (Snakemake prints them only above 1). Added up:
        # the most a group can ask (members that depend on each other ask less at once).
        jobs = re.split(r"^[ \t]+(?:local)?rule [\w.-]+:[ \t]*$", members.get(group, ""), flags=re.M)[1:]
        mem = sum(int(m[1]) for j in jobs if (m := re.search(r"^[ \t]+resources: .*?\bmem_mb=(\d+)", j, re.M)))
        threads = sum(int(m[1]) if (m := re.search(r"^[ \t]+threads: (\d+)", j, re.M)) else 1 for j in jobs)
        found[f"group {group}"] = Refusal(f"group {group}", "", mem, threads)
    return list(found.values())


def audit(conf: dict, jobs: list, nonlocal_on_login: list[str] | None, submit_limit: int | None,
          overhead_s: float, lag: Lag | None = None, nodes: dict[str, tuple[int, int]] | None = None,
          refusals: list[Refusal] | None = None, resumed: tuple[bool, str] | None = None) -> Audit:
    """`jobs`: the policy run's (minihpc.runner.Job); `submit_limit`: the
    user's QOS MaxSubmitJobsPerUser (None: none); `overhead_s`: SLURM's own
    time for a job (prove.overhead); `lag`: the shared filesystem's, measured
    under prove's slow-nfs fault (None: not measured); `nodes`: each compute
    node's CPUs and memory (MiB); `refusals`: the jobs sbatch refused (refused());
    `resumed`: after prove's session-lost fault, whether Snakemake refused
    the resume for the files left incomplete, and what was seen (None: no
    session was lost)."""
    a = Audit()
    resources = a.changes.setdefault("set-resources", {})
    by_rule: dict[str, list] = {}
    for j in jobs:
        by_rule.setdefault(j.rule, []).append(j)
    for rule, js in sorted(by_rule.items()):
        _memory(a, rule, js, resources)
        _time(a, rule, js, resources)
        done = [j for j in js if j.state == "COMPLETED"]
        if done and max(j.elapsed_s for j in done) < overhead_s:
            n = group_size(done, nodes or {})
            group = (f", or group its jobs {n} at a time, as many as fit one node (`group: {rule}` and "
                     f"`--group-components {rule}={n}`: one SLURM job, one overhead, for {n})") if n > 1 else ""
            a.add("tiny rules", FINDING, f"its jobs ran {max(j.elapsed_s for j in done)} s at most, less than SLURM's "
                  f"own {overhead_s:.0f} s for a job (Snakemake starting in the job, the plugin's first status "
                  "check)",
                  f"run it on the login node: `localrules: {rule}` in the Snakefile (or `localrule: True`){group}",
                  rule)
    for r in refusals or []:
        fits = any(r.threads <= c and r.mem_mb <= m for c, m in (nodes or {}).values())
        too_big = any(t in r.said for t in TOO_BIG) or bool(nodes and r.mem_mb and not fits)
        cpus, mem = (max(c for c, _ in nodes.values()), max(m for _, m in nodes.values())) if nodes else (0, 0)
        size = "" if not nodes else (f" (the largest node: {cpus} CPUs, {mem} MiB)" if (cpus, mem) in nodes.values()
                                     else f" (the most any node has: {cpus} CPUs; {mem} MiB)")
        asks = f"; its jobs together ask {r.threads} CPUs and {r.mem_mb} MiB" if r.mem_mb else ""
        a.add("node fit" if too_big else "submission", FINDING,
              f"sbatch refused the {r.name} job: {r.said or 'it never became a SLURM job'}{asks}",
              (f"it asks more than a node has{size}: fewer jobs in a group (`--group-components`), or smaller "
               "requests (`threads`, `mem_mb`)") if too_big else "read sbatch's words: the job's partition, "
              "account, QOS or requests", r.name.split(" ", 1)[1])
    if nonlocal_on_login:
        a.add("profile applied", FINDING, f"rules ran on the login node, outside SLURM: {', '.join(nonlocal_on_login)}",
              "the profile does not send them to SLURM: give it `executor: slurm`, and check the profile is the one "
              "used (--profile)")
    elif jobs:
        a.add("profile applied", OK, f"{len(jobs)} job(s) went to SLURM")
    retries = setting(conf, "retries", setting(conf, "restart-times", 0)) or 0
    if not retries:
        a.add("retries", FINDING, "no retries: a job lost with its node, or killed for memory on its first "
              "attempt, ends the run", "`retries: 2` (and requests that grow with `attempt`)")
        a.changes["retries"] = 2
    else:
        a.add("retries", OK, f"retries: {retries}")
    if setting(conf, "executor") == "slurm" and not setting(conf, "slurm-keep-successful-logs", False):
        a.add("logs", FINDING, "the plugin deletes a successful job's SLURM log: nothing to read when a later "
              "step finds its output wrong", "`slurm-keep-successful-logs: true` (and `slurm-logdir: logs/slurm`)")
        a.changes["slurm-keep-successful-logs"] = True
    wait = setting(conf, "latency-wait", LATENCY_WAIT_S)
    if lag is not None and lag.missing:
        a.add("latency-wait", FINDING, f"latency-wait {wait} s; {lag.missing} of {len(lag.samples)} probe job(s)' "
              "files never reached the login node while they were waited for",
              "find the shared filesystem's lag (minihpc site check SITE --only lag) and set `latency-wait` above it")
    elif lag is not None and not math.isnan(lag.worst):
        seen = f"latency-wait {wait} s; the shared filesystem's lag, measured, {lag.worst:.1f} s at worst"
        if not isinstance(wait, (int, float)) or wait < lag.worst:
            a.add("latency-wait", FINDING, seen + ": Snakemake declares a job's outputs missing before they show",
                  f"`latency-wait: {lag.latency_wait}` (the lag twice over, plus 5 s)")
            a.changes["latency-wait"] = lag.latency_wait
        else:
            a.add("latency-wait", OK, seen)
    if resumed is not None:
        refused, seen = resumed
        if refused:
            a.add("incomplete outputs", FINDING, seen, "`rerun-incomplete: true`, and on coming back after a lost "
                  "session: `scancel --name=RUN_ID` its jobs (they run on) and `snakemake --unlock` (its lock stays)")
            a.changes["rerun-incomplete"] = True
        else:
            a.add("incomplete outputs", OK, seen)
    jobs_at_once = setting(conf, "jobs")
    if submit_limit is not None and isinstance(jobs_at_once, int) and jobs_at_once > submit_limit:
        a.add("jobs", FINDING, f"`jobs: {jobs_at_once}` is above the QOS's limit of {submit_limit} submitted jobs "
              "per user: sbatch refuses the rest", f"`jobs: {submit_limit}`")
        a.changes["jobs"] = submit_limit
    elif jobs_at_once is not None:
        a.add("jobs", OK, f"`jobs: {jobs_at_once}`, within the QOS's submit limit of {submit_limit or 'none'}")
    parts = sorted({j.partition for j in jobs if j.partition})
    a.add("partition and account", NOTE, f"partition(s) {', '.join(parts) or 'none'}; account "
          f"{_resources(conf).get('slurm_account', 'the user default')}")
    if not resources:
        del a.changes["set-resources"]
    return a


def group_size(done: list, nodes: dict[str, tuple[int, int]]) -> int:
    """How many of a rule's jobs fit one node together (by the CPUs and memory
    each asked), on the smallest node they ran on, and no more than there were."""
    cpus = max((int(j.cpus) for j in done if str(j.cpus).isdigit()), default=1) or 1
    mem = max((mib(j.req_mem) for j in done if j.req_mem), default=0.0)
    sizes = [nodes[j.node] for j in done if j.node in nodes]
    if not sizes:
        return 0
    fit = min(min(c // cpus, int(m // mem) if mem else c // cpus) for c, m in sizes)
    return max(0, min(fit, len(done)))


def _resources(conf: dict) -> dict:
    return setting(conf, "default-resources", {}) or {}


def _memory(a: Audit, rule: str, js: list, resources: dict) -> None:
    # OUT_OF_MEMORY under a cgroup; FAILED, its log saying so, under OverMemoryKill (minihpc's
    # enforcement, and many sites'), which also shows it past its request in MaxRSS.
    killed = [j for j in js if j.state == "OUT_OF_MEMORY" or (j.state == "FAILED" and (
        "memory limit" in (j.error or "") or (j.max_rss and j.req_mem and mib(j.max_rss) > mib(j.req_mem))))]
    used = max((mib(j.max_rss) for j in js if j.max_rss), default=0.0)
    asked = max((mib(j.req_mem) for j in js if j.req_mem), default=0.0)
    fits = max(MIN_SUGGESTED_MB, math.ceil(used * HEADROOM / MEM_STEP_MB) * MEM_STEP_MB)
    # A job is the rule with its wildcards: its attempts are its SLURM jobs.
    finished = {j.wildcards for j in js if j.state == "COMPLETED"}
    lost = [j for j in killed if j.wildcards not in finished]  # killed at every attempt
    seen = f"killed for memory: job(s) {', '.join(j.job_id for j in (lost or killed))} (MaxRSS {used:.0f} MiB of " \
           f"{asked:.0f} MiB asked)"
    if lost:
        # Killed at every request tried: the need is not known. Under a cgroup's limit a killed
        # job's MaxRSS is the limit; sampled (OverMemoryKill, as here) it may show more. Ask for
        # twice the most asked, or what fits the most seen if that is more, and more each retry.
        grow = f"{max(fits, math.ceil(2 * asked / MEM_STEP_MB) * MEM_STEP_MB)}*attempt"
        a.add("memory", FINDING, seen + ", never finished: what it needs is more than that",
              f"`mem_mb: {grow}` for {rule} (set-resources; Snakemake evaluates it for each attempt), with "
              "`retries`", rule)
        resources.setdefault(rule, {})["mem_mb"] = grow
    elif killed:
        # A later attempt of each finished (its request grew, or the use varies): the run survived
        # it, at the cost of the killed attempts.
        done = max((mib(j.max_rss) for j in js if j.max_rss and j.state == "COMPLETED"), default=0.0)
        spare = max(MIN_SUGGESTED_MB, math.ceil(done * HEADROOM / MEM_STEP_MB) * MEM_STEP_MB)
        a.add("memory", NOTE, seen + "; a later attempt of the same job finished", f"`mem_mb: {spare}` for "
              f"{rule} (set-resources: {HEADROOM}x the most a finished job used) spares the killed attempts", rule)
    elif used and asked > OVER_REQUEST * used and asked - used > 1000:
        a.add("memory", NOTE, f"asked {asked:.0f} MiB, used {used:.0f} MiB at most", f"`mem_mb: {fits}` for {rule} "
              f"({HEADROOM}x the most used) leaves the rest to other jobs", rule)
    elif used:
        a.add("memory", OK, f"asked {asked:.0f} MiB, used {used:.0f} MiB at most", rule=rule)


def _time(a: Audit, rule: str, js: list, resources: dict) -> None:
    timed_out = [j for j in js if j.state == "TIMEOUT"]
    took = max((j.elapsed_s for j in js), default=0)
    limit = max((elapsed_limit_s(j.time_limit) or 0 for j in js), default=0)
    if timed_out:
        minutes = max(1, math.ceil(took * 2 / 60))
        a.add("runtime", FINDING, f"ended by its time limit: job(s) {', '.join(j.job_id for j in timed_out)} "
              f"({took} s, limit {limit} s)", f"`runtime: {minutes}` (minutes) for {rule} (set-resources), or a "
              "limit that grows with `attempt`", rule)
        resources.setdefault(rule, {})["runtime"] = minutes
    elif js:
        a.add("runtime", OK, f"ran {took} s at most of {limit} s allowed", rule=rule)


def suggest(conf: dict, changes: dict) -> dict:
    """The profile with the audit's changes applied."""
    out = dict(conf)
    for key, value in changes.items():
        if key == "set-resources":
            merged = {r: dict(v) for r, v in (setting(conf, key, {}) or {}).items()}
            for rule, res in value.items():
                merged.setdefault(rule, {}).update(res)
            out.pop("set_resources", None)
            out[key] = merged
        else:
            out.pop(key.replace("-", "_"), None)
            out[key] = value
    return out
