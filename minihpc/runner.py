"""`minihpc run PATH`: bring your own workflow.

The workflow directory is synced to the shared filesystem as the lab user,
Snakemake runs on the login node through the chosen profile with its output
streamed live, and a report says what really happened: the profile applied,
every SLURM job of the run (rule, wildcards, node, state, time, memory) from
sacct, any non-local rule that ran outside SLURM, the logs kept, the outputs
fetched back. Everything is validated before anything is touched.
"""

from __future__ import annotations

import fnmatch
import io
import json
import re
import shlex
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from minihpc import ROOT
from minihpc.cluster import Cluster, largest_step_rss
from minihpc.errors import BadInput, MinihpcError

SNAKEFILES = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")
PROFILE_FILES = ("config.yaml", "config.v8+.yaml", "profile.yaml")
# Defaults, in order, relative to the workflow; then minihpc's own.
DEFAULT_PROFILES = ("profiles/slurm", "workflow/profiles/default")
OWN_PROFILE = ROOT / "profiles/slurm"
# Never synced: Snakemake's state, minihpc's reports, version control.
ALWAYS_EXCLUDED = (".snakemake", ".minihpc", ".git")
REMOTE_PROFILE = ".minihpc/profile"  # where a profile from outside the workflow lands
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
JOB_FIELDS = ("JobID", "JobName", "Comment", "Partition", "NodeList", "State", "ExitCode", "ElapsedRaw", "Timelimit",
              "ReqMem", "AllocCPUS")


@dataclass
class Plan:
    workflow: Path
    name: str
    profile: Path
    profile_remote: str  # relative to the synced directory
    snakemake_args: list[str]
    report_dir: Path
    fetch: list[str]
    exclude: list[str]
    fresh: bool

    def remote(self, shared: str) -> str:
        return f"{shared}/{self.name}"


def plan(path: str, profile: str | None, name: str | None, report: str | None, fetch: list[str],
         exclude: list[str], fresh: bool, snakemake_args: list[str]) -> Plan:
    """Check everything about a run before anything is touched."""
    workflow = Path(path).resolve()
    if not workflow.is_dir():
        raise BadInput(f"{path} is not a directory", "give the directory that holds your workflow's Snakefile")
    if not any((workflow / f).is_file() for f in SNAKEFILES):
        raise BadInput(f"no Snakefile in {workflow} (looked for {', '.join(SNAKEFILES)})",
                       "point minihpc run at the directory that holds your Snakefile")
    prof = _profile(workflow, profile)
    inside = prof.is_relative_to(workflow)
    run_name = name or re.sub(r"[^A-Za-z0-9._-]", "-", workflow.name).lstrip("._-") or "workflow"
    if not NAME.fullmatch(run_name):
        raise BadInput(f"--name {run_name!r} is not a plain directory name",
                       "use letters, digits, '.', '_' and '-' (at most 64)")
    for pattern in fetch:
        _inside_pattern(pattern, "--fetch")
    for pattern in exclude:
        _inside_pattern(pattern, "--exclude")
    return Plan(workflow, run_name, prof, str(prof.relative_to(workflow)) if inside else REMOTE_PROFILE,
                snakemake_args, Path(report).resolve() if report else workflow / ".minihpc", fetch, exclude, fresh)


def _profile(workflow: Path, given: str | None) -> Path:
    if given is not None:
        p = Path(given)
        candidates = [p] if p.is_absolute() else [workflow / p, Path.cwd() / p]
        for c in candidates:
            if c.is_dir() and any((c / f).is_file() for f in PROFILE_FILES):
                return c.resolve()
        raise BadInput(f"no Snakemake profile at {given} (a directory with {' or '.join(PROFILE_FILES)}, "
                       f"looked in {' and '.join(str(c) for c in candidates)})",
                       "give --profile the profile's directory, e.g. --profile profiles/slurm")
    for rel in DEFAULT_PROFILES:
        c = workflow / rel
        if c.is_dir() and any((c / f).is_file() for f in PROFILE_FILES):
            return c.resolve()
    return OWN_PROFILE


def _inside_pattern(pattern: str, flag: str) -> None:
    p = PurePosixPath(pattern)
    if not pattern or p.is_absolute() or ".." in p.parts:
        raise BadInput(f"{flag} {pattern!r} reaches outside the workflow",
                       "give a pattern relative to the workflow directory, e.g. 'results/*.txt'")


# -- the run -------------------------------------------------------------------

@dataclass
class Job:
    job_id: str
    rule: str
    wildcards: str
    partition: str
    node: str
    state: str
    exit_code: str
    elapsed_s: int
    time_limit: str
    req_mem: str
    max_rss: str
    cpus: str


@dataclass
class Report:
    workflow: str
    remote: str
    profile: str
    profile_source: str
    command: str
    exit_code: int
    seconds: float
    run_id: str | None
    jobs: list[Job] = field(default_factory=list)
    nonlocal_rules_on_login: list[str] | None = field(default_factory=list)
    kept_logs: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    # The picture of the run's jobs (minihpc.timeline) beside report.md, or why there is none.
    timeline: str = ""


def execute(p: Plan, cluster: Cluster, out=sys.stdout) -> Report:
    """Sync, run Snakemake streaming its output, then report. Returns the report
    (its exit_code is Snakemake's)."""
    f = cluster.facts
    remote = p.remote(f.shared)
    alive = cluster.sh("true", timeout=60)
    if alive.rc != 0:
        raise MinihpcError(f"the cluster does not answer: {alive.out.strip()[:300]}", "bring it up: minihpc up")
    _sync(p, cluster, remote)
    cmd = "snakemake --profile " + " ".join(shlex.quote(a) for a in [p.profile_remote, *p.snakemake_args])
    since = cluster.now()
    t = time.monotonic()
    running = cluster.spawn(cmd, workdir=remote)
    lines = []
    for line in running.proc.stdout:  # type: ignore[union-attr]
        out.write(line)
        out.flush()
        lines.append(line)
    rc = running.proc.wait()
    output = "".join(lines)
    report = Report(str(p.workflow), remote, p.profile_remote,
                    "the workflow's own" if p.profile_remote != REMOTE_PROFILE else str(p.profile),
                    cmd, rc, round(time.monotonic() - t, 1), run_id(output))
    report.jobs = _jobs(cluster, since, report.run_id)
    report.timeline = _timeline(cluster, p.report_dir, report.run_id)
    report.nonlocal_rules_on_login = on_login(output, declared_local(cluster, remote))
    report.kept_logs = _logs(cluster, remote)
    report.fetched = _fetch(p, cluster, remote)
    _write(p.report_dir, report)
    return report


def _sync(p: Plan, cluster: Cluster, remote: str) -> None:
    excluded = (*ALWAYS_EXCLUDED, *p.exclude)

    def skip(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel.split("/")[0], pat) for pat in excluded)
    sources: list = [(p.workflow, ".", skip)]
    if p.profile_remote == REMOTE_PROFILE:
        sources.append((p.profile, REMOTE_PROFILE, None))
    r = cluster.put(remote, sources, fresh=p.fresh)
    if r.rc != 0:
        raise MinihpcError(f"could not sync {p.workflow} to {remote}: {r.out.strip()[:500]}",
                           "is the shared filesystem up? minihpc status")


def run_id(output: str) -> str | None:
    m = re.search(r"SLURM run ID: ([0-9a-f-]{36})", output)
    return m.group(1) if m else None


def _jobs(cluster: Cluster, since: str, rid: str | None) -> list[Job]:
    if rid is None:
        return []
    rows = [r for r in cluster.sacct(since, JOB_FIELDS) if r["JobName"] == rid]
    rss = largest_step_rss(cluster.sacct(since, ("JobID", "MaxRSS"), steps=True))
    jobs = []
    for r in rows:
        # The plugin comments each job rule_<rule>[_wildcards_<values>] (a group: rule_<group>_<rules>).
        rule, _, wildcards = r["Comment"].removeprefix("rule_").partition("_wildcards_")
        jobs.append(Job(r["JobID"], rule, wildcards, r["Partition"], r["NodeList"], r["State"], r["ExitCode"],
                        int(r["ElapsedRaw"] or 0), r["Timelimit"], r["ReqMem"], rss.get(r["JobID"], ""),
                        r["AllocCPUS"]))
    return jobs


def _timeline(cluster: Cluster, report_dir: Path, rid: str | None) -> str:
    """Draw the run's timeline beside the report; the SVG's name, or why not."""
    from minihpc import timeline
    if rid is None:
        return "none: no job went to SLURM"
    try:
        paths, _ = timeline.timeline(cluster, report_dir / "timeline", run=rid)
    except MinihpcError as e:
        return f"not drawn: {e}"
    return paths[-1].name


def declared_local(cluster: Cluster, remote: str) -> set[str] | None:
    """The rules the workflow declares local (`localrules:` or `localrule: True`),
    read from Snakemake's own translation of the Snakefile; None if it fails."""
    r = cluster.sh(f"cd {shlex.quote(remote)} && snakemake --print-compilation")
    if r.rc != 0:
        return None
    names = set()
    for args in re.findall(r"^workflow\.localrules\((.*?)\)", r.out, re.M | re.S):
        names |= {a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", args)}
    rule = None
    for line in r.out.splitlines():
        m = re.match(r"@workflow\.rule\(name='([^']+)'", line)
        if m:
            rule = m.group(1)
        elif line.startswith("@workflow.localrule( True") and rule:
            names.add(rule)
    return names


def on_login(output: str, local: set[str] | None) -> list[str] | None:
    """Non-local rules whose jobs Snakemake ran itself, on the login node: it
    prints each job it runs in its own process as `localrule NAME:` (a job
    sent to SLURM as `rule NAME:`, a group's members indented under it). Such
    a job is the sign of a profile that was not applied. None: unknown."""
    if local is None:
        return None
    return sorted(set(re.findall(r"^local(?:rule|checkpoint) (\w+):", output, re.M)) - local)


def _logs(cluster: Cluster, remote: str) -> list[str]:
    r = cluster.sh(f"cd {shlex.quote(remote)} && find . -path ./.minihpc -prune -o -type f -name '*.log' "
                   "-path '*slurm*' -print | sed 's#^./##' | sort")
    return r.out.split() if r.rc == 0 else []


def _fetch(p: Plan, cluster: Cluster, remote: str) -> list[str]:
    if not p.fetch:
        return []
    pats = " ".join(shlex.quote(x) for x in p.fetch)
    script = (f"cd {shlex.quote(remote)} && shopt -s globstar nullglob && files=() && "
              f"for pat in {pats}; do for f in $pat; do [ -f \"$f\" ] && files+=(\"$f\"); done; done && "
              "tar -c -- \"${files[@]}\" 2>/dev/null || tar -c --files-from /dev/null")
    rc, data, err = cluster.pipe(script)
    if rc != 0:
        raise MinihpcError(f"could not fetch {', '.join(p.fetch)} from {remote}: {err.strip()[:300]}",
                           "check the patterns against the run directory")
    got = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            rel = PurePosixPath(m.name)
            if not m.isfile() or rel.is_absolute() or ".." in rel.parts:
                continue  # only plain files inside the workflow come back
            dest = p.workflow / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
            got.append(str(rel))
    return sorted(got)


def _on_login_text(rules: list[str] | None) -> str:
    if rules is None:
        return "unknown (snakemake --print-compilation failed)"
    return f"{', '.join(rules)} (the profile did not send them to SLURM)" if rules else "none"


def _write(report_dir: Path, r: Report) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(asdict(r), indent=1) + "\n")
    lines = [f"# minihpc run: {Path(r.workflow).name}", "",
             f"- command: `{r.command}` in `{r.remote}` on the login node",
             f"- profile: `{r.profile}` ({r.profile_source})",
             f"- exit code: {r.exit_code} (Snakemake's), {r.seconds} s",
             f"- SLURM run ID: {r.run_id or 'none: no job went to SLURM'}",
             f"- non-local rules run on the login node: {_on_login_text(r.nonlocal_rules_on_login)}", "",
             "| job | rule | wildcards | partition | node | state | exit | elapsed s | time limit | requested mem "
             "| max RSS | CPUs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {j.job_id} | {j.rule} | {j.wildcards} | {j.partition} | {j.node} | {j.state} | {j.exit_code} "
              f"| {j.elapsed_s} | {j.time_limit} | {j.req_mem} | {j.max_rss or 'n/a'} | {j.cpus} |" for j in r.jobs]
    drawn = r.timeline.endswith(".svg")
    lines += ["", f"![the run's jobs over time]({r.timeline})" if drawn else f"Timeline: {r.timeline or 'none'}"]
    lines += ["", "Kept SLURM logs:", *(f"- `{x}`" for x in r.kept_logs or ["(none)"]),
              "", "Fetched outputs:", *(f"- `{x}`" for x in r.fetched or ["(none)"]), ""]
    (report_dir / "report.md").write_text("\n".join(lines))
