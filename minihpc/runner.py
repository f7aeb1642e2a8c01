"""`minihpc run PATH`: bring your own workflow.

The workflow directory is synced to the shared filesystem as the lab user,
Snakemake runs on the login node through the chosen profile with its output
streamed live, and a report says what really happened: the profile applied,
every SLURM job of the run (rule, wildcards, node, state, time, memory) from
sacct, any non-local rule that ran outside SLURM, the logs kept, the outputs
fetched back. Everything is validated before anything is touched.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import re
import secrets
import shlex
import stat
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from minihpc import ROOT, pyenv
from minihpc.cluster import Cluster, UnsafeDir, largest_step_rss
from minihpc.errors import BadInput, MinihpcError
from minihpc.sitefile import Site

SNAKEFILES = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")
PROFILE_FILES = ("config.yaml", "config.v8+.yaml", "profile.yaml")
# Defaults, in order, relative to the workflow; then minihpc's own.
DEFAULT_PROFILES = ("profiles/slurm", "workflow/profiles/default")
OWN_PROFILE = ROOT / "profiles/slurm"
# Never synced: Snakemake's state, minihpc's reports, version control.
ALWAYS_EXCLUDED = (".snakemake", ".minihpc", ".git")
# Never fetched into: the above, and other version control whose hooks and
# config the host runs (compared case-blind: some hosts' filesystems are).
CONTROL_DIRS = frozenset(d.casefold() for d in (*ALWAYS_EXCLUDED, ".hg", ".svn"))
# What --fetch reads back from the cluster, at most: it is held in memory.
FETCH_MAX_BYTES = 512 * 2**20
FETCH_MAX_FILES = 20_000
# Kept SLURM logs listed, at most (the workflow makes them).
MAX_LOGS = 10_000
REMOTE_PROFILE = ".minihpc/profile"  # where a profile from outside the workflow lands
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Software deployment Snakemake may be asked for (in its arguments or the
# profile): environment modules are on every node (Lmod); conda and apptainer
# are not, and a run asking for them is refused before anything starts.
ENV_MODULES = "env-modules"
ABSENT_DEPLOYMENT = ("conda", "apptainer")
USE_FLAGS = {"use-conda": "conda", "use-apptainer": "apptainer", "use-singularity": "apptainer",
             "use-envmodules": ENV_MODULES}
SDM_KEYS = ("sdm", "software-deployment-method")
# A failed job's log: the lines that say why (a Python exception, Snakemake's RuleException).
# A failed job's reason in its log: a Python error, or slurmstepd killing it for
# memory ("StepId=7.batch exceeded memory limit (N > M), being killed": Slurm's
# OverMemoryKill, which leaves the job FAILED, not OUT_OF_MEMORY) or time.
ERROR_LINE = re.compile(r"^\s*(?:[\w.]*(?:Error|Exception): \S.*|slurmstepd[\w.-]*: error: .*(?:exceeded memory "
                        r"limit|DUE TO TIME LIMIT).*)$", re.M)
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
    requirements: pyenv.Requirements | None = None
    # On a site (run --site): minihpc's own profile is made for it (Site.profile).
    site: Site | None = None

    def remote(self, shared: str) -> str:
        return f"{shared}/{self.name}"


def plan(path: str, profile: str | None, name: str | None, report: str | None, fetch: list[str],
         exclude: list[str], fresh: bool, snakemake_args: list[str], requirements: list[str] | None = None,
         pip: list[str] | None = None, no_requirements: bool = False) -> Plan:
    """Check everything about a run before anything is touched."""
    workflow = Path(path).resolve()
    if not workflow.is_dir():
        raise BadInput(f"{path} is not a directory", "give the directory that holds your workflow's Snakefile")
    given = snakemake_paths(snakemake_args)
    for flag, rel in given:
        _inside_workflow(workflow, flag, rel, must_exist=flag != "--directory")
    if not any(flag == "--snakefile" for flag, _ in given) and not any((workflow / f).is_file() for f in SNAKEFILES):
        raise BadInput(f"no Snakefile in {workflow} (looked for {', '.join(SNAKEFILES)})",
                       "give the directory that holds your Snakefile, "
                       "or name it among Snakemake's arguments: -- --snakefile FILE")
    prof = _profile(workflow, profile)
    # A profile under a directory that is never synced (prove's suggestion in
    # .minihpc/) travels as one from outside the workflow does.
    inside = prof.is_relative_to(workflow) and not never_synced(prof.relative_to(workflow).as_posix(), exclude)
    run_name = name or re.sub(r"[^A-Za-z0-9._-]", "-", workflow.name).lstrip("._-") or "workflow"
    if not NAME.fullmatch(run_name):
        raise BadInput(f"--name {run_name!r} is not a plain directory name",
                       "use letters, digits, '.', '_' and '-' (at most 64)")
    for pattern in fetch:
        _inside_pattern(pattern, "--fetch")
    # As bash names what they match (results/x, never ./results/x), which is what is checked on the way back.
    fetch = [str(PurePosixPath(x)) for x in fetch]
    for pattern in exclude:
        _inside_pattern(pattern, "--exclude")
    _no_other_deployment(prof, snakemake_args)
    req = pyenv.requirements(workflow, requirements or [], pip or [], no_requirements)
    return Plan(workflow, run_name, prof, str(prof.relative_to(workflow)) if inside else REMOTE_PROFILE,
                snakemake_args, Path(report).resolve() if report else workflow / ".minihpc", fetch, exclude, fresh,
                req)


# Snakemake's arguments that name a path the run reads (or, --directory,
# works in), each as its long flag; relative to the directory it runs in.
PATH_FLAGS = {"-s": "--snakefile", "--snakefile": "--snakefile", "-d": "--directory", "--directory": "--directory",
              "--configfile": "--configfile", "--configfiles": "--configfile"}
MANY = {"--configfile"}  # takes every value up to the next option


def snakemake_paths(args: list[str]) -> list[tuple[str, str]]:
    """The paths Snakemake's arguments name, as (long flag, path), in the
    forms Snakemake accepts: `-s F`, `-sF`, `--snakefile F`, `--snakefile=F`;
    --configfile takes several. A flag with no value is refused here, as
    Snakemake would refuse it later."""
    found, i = [], 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":  # targets follow
            break
        flag, value = a, None
        if a.startswith("--") and "=" in a:
            flag, value = a.split("=", 1)
        elif len(a) > 2 and a[:2] in ("-s", "-d") and not a.startswith("--"):
            flag, value = a[:2], a[2:]
        long = PATH_FLAGS.get(flag)
        if long is None:
            continue
        values = [value] if value is not None else []
        while value is None and i < len(args) and not args[i].startswith("-"):
            values.append(args[i])
            i += 1
            if long not in MANY:
                break
        if not values or not all(values):
            raise BadInput(f"{a} names no path", f"give it one: {long} PATH (relative to the workflow directory)")
        found += [(long, v) for v in values]
    return found


def _inside_workflow(workflow: Path, flag: str, rel: str, must_exist: bool) -> None:
    """A path among Snakemake's arguments: inside the workflow (that is what
    is synced, and where Snakemake runs), and there if it is read."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        raise BadInput(f"{flag} {rel} is outside the workflow directory {workflow}",
                       "give a path inside it, relative to it (only the workflow directory goes to the cluster)")
    if must_exist and not (workflow / rel).is_file():
        raise BadInput(f"{flag} {rel}: no such file in {workflow}", "give the file's path relative to the workflow "
                       "directory")


def deployment(profile: Path, args: list[str]) -> dict[str, str]:
    """Each software deployment method the run asks Snakemake for (conda,
    apptainer, env-modules), and where it asks: `--use-conda`,
    `--sdm conda env-modules` or `--sdm=conda` among the arguments, or the
    same keys in the profile (`use-conda: true`, `software-deployment-method:
    [conda]`)."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        flag, eq, value = a.partition("=")
        if flag.startswith("--") and flag[2:] in USE_FLAGS and not eq:
            found.setdefault(USE_FLAGS[flag[2:]], a)
        elif flag.startswith("--") and flag[2:] in SDM_KEYS:
            values = [value] if eq else []
            while not eq and i < len(args) and not args[i].startswith("-"):  # nargs="+", as Snakemake's
                values.append(args[i])
                i += 1
            for v in values:
                found.setdefault(v, f"{flag} {v}")
    for f in PROFILE_FILES:
        try:
            conf = yaml.safe_load((profile / f).read_text()) if (profile / f).is_file() else None
        except yaml.YAMLError:
            continue  # Snakemake says what is wrong with it
        for key, v in (conf.items() if isinstance(conf, dict) else ()):
            key = str(key).replace("_", "-")
            if key in USE_FLAGS and v is True:
                found.setdefault(USE_FLAGS[key], f"{key}: true in the profile's {f}")
            elif key in SDM_KEYS:
                for x in (v if isinstance(v, list) else [v]):
                    found.setdefault(str(x), f"{key}: {x} in the profile's {f}")
    return found


def _no_other_deployment(profile: Path, args: list[str]) -> None:
    """Conda and apptainer are not on this cluster: a run that asks for them
    would fail in every job, so it is refused before it starts."""
    asked = deployment(profile, args)
    for method in ABSENT_DEPLOYMENT:
        if method in asked:
            raise BadInput(f"{asked[method]!r} asks for {method}, which this cluster does not have",
                           "drop it and give the rules' packages as pip requirements (--requirements FILE or "
                           "--pip PKG), or load them as environment modules (envmodules: with --sdm env-modules)")


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
    # Why it failed, from its kept log (exception lines); empty for a job that completed.
    error: str = ""


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
    # What the cluster sent back for --fetch and was not written, each as "name: why".
    fetch_refused: list[str] = field(default_factory=list)
    # The Python environment Snakemake and every job ran in, and what it held (minihpc.pyenv).
    environment: dict | None = None
    # What was said before the run (software deployment this cluster does not have).
    notices: list[str] = field(default_factory=list)
    # The picture of the run's jobs (minihpc.timeline) beside report.md, or why there is none.
    timeline: str = ""


def execute(p: Plan, cluster: Cluster, out=sys.stdout, before_run: Callable[[], object] | None = None,
            after_run: Callable[[], object] | None = None,
            compiled_once: dict[str, str | None] | None = None) -> Report:
    """Sync, run Snakemake streaming its output, then report. Returns the report
    (its exit_code is Snakemake's). `before_run` is called once the workflow
    is in place, just before Snakemake starts, and `after_run` as soon as it
    has exited, before the run is read (prove's faults start and end there).
    `compiled_once`: runs of the same sources that share it (prove's) have
    the workflow compiled by the first (a Snakemake start saved each)."""
    f = cluster.facts
    remote = p.remote(f.shared)
    alive = cluster.sh("true", timeout=60)
    if alive.rc != 0:
        raise MinihpcError(f"the cluster does not answer: {alive.out.strip()[:300]}", "bring it up: minihpc up")
    _claimable(cluster, remote)  # before an environment is made; _sync checks again as it writes
    env = environment(p, cluster)
    _sync(p, cluster, remote)
    compiled = compile_workflow(cluster, remote, p.snakemake_args, compiled_once)
    notices = deployment_notices(compiled, env, ENV_MODULES in deployment(p.profile, p.snakemake_args))
    for n in notices:
        say(f"minihpc: {n}")
    cmd = command(p)
    since = cluster.now()
    if before_run is not None:
        before_run()
    t = time.monotonic()
    running = cluster.spawn(env.activate() + cmd, workdir=remote)
    lines = []
    for line in running.proc.stdout:  # type: ignore[union-attr]
        out.write(line)
        out.flush()
        lines.append(line)
    rc = running.wait().rc  # its output read above; this also ends its lease on a site's connection
    if after_run is not None:
        after_run()
    output = "".join(lines)
    report = Report(str(p.workflow), remote, p.profile_remote,
                    "the workflow's own" if p.profile_remote != REMOTE_PROFILE else str(p.profile),
                    cmd, rc, round(time.monotonic() - t, 1), run_id(output))
    report.environment, report.notices = asdict(env), notices
    report.jobs = run_jobs(cluster, since, report.run_id)
    report.timeline = _timeline(cluster, p.report_dir, report.run_id)
    report.nonlocal_rules_on_login = on_login(output, declared_local(compiled))
    report.kept_logs = _logs(cluster, remote)
    _why_failed(cluster, remote, report.jobs, report.kept_logs)
    for n in modules_not_loaded(cluster, remote, report.jobs, report.kept_logs):
        say(f"minihpc: {n}")
        report.notices.append(n)
    try:
        report.fetched, report.fetch_refused = _fetch(p, cluster, remote)
    finally:
        write_report(p.report_dir, report)  # the run's report stands whatever came back
    say_refused(report.fetch_refused)
    return report


def environment(p: Plan, cluster: Cluster) -> pyenv.Env:
    """The Python environment the run's Snakemake and jobs use (made once, then found)."""
    return pyenv.provide(cluster, p.requirements, say) if p.requirements else pyenv.cluster_own(cluster)


def command(p: Plan, *extra: str) -> str:
    """The run's Snakemake command line (in its directory, its environment active)."""
    return "snakemake --profile " + " ".join(shlex.quote(a) for a in [p.profile_remote, *p.snakemake_args, *extra])


def say_refused(refused: list[str], at_most: int = 20) -> None:
    """On standard error, what --fetch did not write and why."""
    for line in refused[:at_most]:
        say(f"minihpc: not fetched: {line}")
    if len(refused) > at_most:
        say(f"minihpc: not fetched: {len(refused) - at_most} more (report.json, fetch_refused)")


def _claimable(cluster: Cluster, remote: str) -> None:
    try:
        cluster.check_dir(remote)
    except UnsafeDir as e:
        raise _with_name_fix(e) from None


def _with_name_fix(e: UnsafeDir) -> MinihpcError:
    return MinihpcError(e.what, f"{e.fix}, or run under another name: --name NAME" if e.where == "dir" else e.fix)


def never_synced(rel: str, exclude: list[str]) -> bool:
    """Whether a path of the workflow stays behind: it, or its first
    component, matches what is never synced or --exclude."""
    return any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel.split("/")[0], pat)
               for pat in (*ALWAYS_EXCLUDED, *exclude))


def _sync(p: Plan, cluster: Cluster, remote: str) -> None:
    def skip(rel: str) -> bool:
        return never_synced(rel, p.exclude)
    sources: list = [(p.workflow, ".", skip)]
    if p.profile_remote == REMOTE_PROFILE:
        sources.append((p.profile, REMOTE_PROFILE, None))
    try:
        r = cluster.put(remote, sources, fresh=p.fresh)
    except UnsafeDir as e:
        raise _with_name_fix(e) from None
    if r.rc != 0:
        raise MinihpcError(f"could not sync {p.workflow} to {remote}: {r.out.strip()[:500]}",
                           "is the shared filesystem up? minihpc status")
    if p.site and p.profile_remote == REMOTE_PROFILE:
        conf = next(p.profile / f for f in PROFILE_FILES if (p.profile / f).is_file())
        text = p.site.profile(conf.read_text())
        r = cluster.sh(f"cat > {shlex.quote(f'{REMOTE_PROFILE}/{conf.name}')}", workdir=remote, stdin=text.encode())
        if r.rc != 0:
            raise MinihpcError(f"could not write the site's profile in {remote}: {r.out.strip()[:300]}",
                               "is the work directory writable?")


def run_id(output: str, last: bool = False) -> str | None:
    """The SLURM run ID Snakemake said (the first, or the `last` of several runs' output)."""
    found = re.findall(r"SLURM run ID: ([0-9a-f-]{36})", output)
    return (found[-1] if last else found[0]) if found else None


def run_jobs(cluster: Cluster, since: str, rid: str | None) -> list[Job]:
    """The jobs of SLURM run `rid` (sacct, since `since`), with their rules and what they used."""
    if rid is None:
        return []
    rows = [r for r in cluster.sacct(since, JOB_FIELDS) if r["JobName"] == rid]
    rss = largest_step_rss(cluster.sacct(since, ("JobID", "MaxRSS"), steps=True))
    jobs = []
    for r in rows:
        # The plugin comments each job rule_<rule>[_wildcards_<values>] (a group: rule_<group>_<rules>).
        rule, _, wildcards = r["Comment"].removeprefix("rule_").partition("_wildcards_")
        elapsed = r["ElapsedRaw"]
        jobs.append(Job(r["JobID"], rule, wildcards, r["Partition"], r["NodeList"], r["State"], r["ExitCode"],
                        int(elapsed) if elapsed.isdigit() else 0, r["Timelimit"], r["ReqMem"], rss.get(r["JobID"], ""),
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


def compile_workflow(cluster: Cluster, remote: str, snakemake_args: list[str] = (),
                     once: dict[str, str | None] | None = None) -> str | None:
    """Snakemake's own translation of the Snakefile (the one the arguments
    name, if any) into Python (what every rule declares, includes resolved);
    None if it fails. `once`: kept there by the Snakefile named, for the next
    run of the same sources."""
    snakefile = " ".join([f"--snakefile {shlex.quote(v)}" for flag, v in snakemake_paths(list(snakemake_args))
                          if flag == "--snakefile"][-1:])
    if once is not None and snakefile in once:
        return once[snakefile]
    r = cluster.sh(f"cd {shlex.quote(remote)} && snakemake --print-compilation {snakefile}")
    compiled = r.out if r.rc == 0 else None
    if once is not None:
        once[snakefile] = compiled
    return compiled


def _rules_declaring(compiled: str, decorator: str) -> dict[str, str]:
    """Each rule whose compiled form carries @workflow.DECORATOR(...), and its
    argument (on one line, or on the lines up to its closing parenthesis)."""
    found, rule, lines = {}, None, compiled.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"@workflow\.rule\(name='([^']+)'", line)
        if m:
            rule = m.group(1)
        elif line.startswith(f"@workflow.{decorator}(") and rule:
            text, j = line[len(decorator) + 11:], i
            while text.count("(") >= text.count(")") and j + 1 < len(lines):  # until its own ")" closes it
                j += 1
                text += " " + lines[j].strip()
            found[rule] = " ".join(text.rsplit(")", 1)[0].split()).rstrip(",").strip()
    return found


def declared_local(compiled: str | None) -> set[str] | None:
    """The rules that run where Snakemake runs by the workflow's own say
    (`localrules:`, `localrule: True`) or by Snakemake's (a rule with no
    action, such as a target rule `all`); None: unknown."""
    if compiled is None:
        return None
    names = set()
    for args in re.findall(r"^workflow\.localrules\((.*?)\)", compiled, re.M | re.S):
        names |= {a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", args)}
    return names | {r for r, v in _rules_declaring(compiled, "localrule").items() if v.startswith("True")} | \
        set(_rules_declaring(compiled, "norun"))


def deployment_notices(compiled: str | None, env: pyenv.Env, modules: bool) -> list[str]:
    """What to say, before anything is submitted, about `conda:` and
    `envmodules:` directives: conda is not on this cluster, so Snakemake
    ignores them and runs those rules in the run's one Python environment;
    modules are, but Snakemake loads them only when asked (`modules`)."""
    if compiled is None:
        return []
    notes = []
    rules = _rules_declaring(compiled, "conda")
    if rules:
        todo = (f"Their packages must be in {env.source}." if env.name.startswith(pyenv.PREFIX) else
                "Give their packages as pip requirements: --requirements FILE or --pip PKG ...")
        notes.append(f"rule(s) {', '.join(sorted(rules))} declare conda: environments "
                     f"({'; '.join(sorted(set(rules.values())))}), which this cluster does not have: Snakemake "
                     f"ignores them and runs these rules in the run's Python environment ({env.name}, {env.path}). "
                     f"{todo}")
    rules = _rules_declaring(compiled, "envmodules")
    if rules and not modules:
        notes.append(f"rule(s) {', '.join(sorted(rules))} declare envmodules: "
                     f"({'; '.join(sorted(set(rules.values())))}), which Snakemake loads only when asked: without "
                     f"--sdm {ENV_MODULES} (or use-envmodules: true in the profile) their commands run without "
                     "those modules")
    return notes


def say(text: str) -> None:
    # One write per line: prove's runs speak from two threads at once.
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _why_failed(cluster: Cluster, remote: str, jobs: list[Job], logs: list[str]) -> None:
    """Each failed job's reason from its kept log (the plugin names it JOBID.log)."""
    by_id = {PurePosixPath(x).stem: x for x in logs}
    failed = [j for j in jobs if j.state != "COMPLETED" and j.job_id in by_id][:20]
    if not failed:
        return
    # A marker no log can hold (drawn now), and at most 64 KiB of each log's end.
    mark = f"@@minihpc-{secrets.token_hex(16)} "
    r = cluster.sh(f"cd {shlex.quote(remote)} && for f in " + " ".join(shlex.quote(by_id[j.job_id]) for j in failed)
                   + f"; do echo {shlex.quote(mark)}\"$f\"; tail -c 65536 -- \"$f\" | tail -n 200; done")
    text = {head.strip(): body for head, _, body in (c.partition("\n") for c in r.out.split(mark)[1:])}
    for j in failed:
        lines = list(dict.fromkeys(m.group(0).strip() for m in ERROR_LINE.finditer(text.get(by_id[j.job_id], ""))))
        j.error = " | ".join(lines[:3])[:400]


LMOD_ERROR = "Lmod has detected the following error:"


def modules_not_loaded(cluster: Cluster, remote: str, jobs: list[Job], logs: list[str]) -> list[str]:
    """The run's jobs whose `envmodules:` Lmod could not load, from their
    kept logs. Snakemake runs `module load ...; COMMAND`: the command runs
    all the same, and the job may even complete, without the module."""
    by_id = {PurePosixPath(x).stem: x for x in logs}
    mine = [by_id[j.job_id] for j in jobs if j.job_id in by_id]
    if not mine:
        return []
    r = cluster.sh(f"cd {shlex.quote(remote)} && printf '%s\\0' " + " ".join(shlex.quote(x) for x in mine)
                   + f" | xargs -0 grep -l -F -- {shlex.quote(LMOD_ERROR)} 2>/dev/null; true")
    hit = {PurePosixPath(x).stem for x in r.out.split()}
    return [f"job {j.job_id} (rule {j.rule}) {j.state}, but Lmod could not load one of its envmodules "
            f"(\"{LMOD_ERROR}\" in {by_id[j.job_id]}): Snakemake runs `module load ...; COMMAND`, so the "
            "command ran without it. Check the module's name and version with `module spider NAME`"
            for j in jobs if j.job_id in hit]


def on_login(output: str, local: set[str] | None) -> list[str] | None:
    """Non-local rules whose jobs Snakemake ran itself, on the login node: it
    prints each job it runs in its own process as `localrule NAME:` (a job
    sent to SLURM as `rule NAME:`, a group's members indented under it). Such
    a job is the sign of a profile that was not applied. None: unknown."""
    if local is None:
        return None
    return sorted(set(re.findall(r"^local(?:rule|checkpoint) (\w+):", output, re.M)) - local)


def _logs(cluster: Cluster, remote: str) -> list[str]:
    """The kept SLURM logs' names under the run directory. The workflow makes
    them: names are split on NUL (a name can hold newlines), and only plain
    relative ones are kept, at most MAX_LOGS."""
    rc, out, _ = cluster.pipe(f"cd {shlex.quote(remote)} && find . -path ./.minihpc -prune -o -type f "
                              f"-name '*.log' -path '*slurm*' -print0 | head -z -n {MAX_LOGS}")
    if rc != 0:
        return []
    names = (n.decode(errors="surrogateescape").removeprefix("./") for n in out.split(b"\0") if n)
    return sorted(n for n in names if _plain_name(n) is None)


def _fetch(p: Plan, cluster: Cluster, remote: str) -> tuple[list[str], list[str]]:
    """Bring back what the --fetch patterns match: (names written, "name: why" refused)."""
    if not p.fetch:
        return [], []
    pats = " ".join(shlex.quote(x) for x in p.fetch)
    # IFS= : a pattern is never split into words. At most one byte over the
    # limit comes back, so a larger stream is known for what it is.
    script = (f"set -o pipefail; cd {shlex.quote(remote)} && shopt -s globstar nullglob && IFS= && files=() && "
              f"for pat in {pats}; do for f in $pat; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && files+=(\"$f\"); "
              "done; done && if [ ${#files[@]} -eq 0 ]; then tar -c --files-from /dev/null; "
              f"else tar -c --no-recursion -- \"${{files[@]}}\"; fi | head -c {FETCH_MAX_BYTES + 1}")
    rc, data, err = cluster.pipe(script)
    _not_too_much(len(data), 0)
    if rc != 0:
        raise MinihpcError(f"could not fetch {', '.join(p.fetch)} from {remote}: {clean(err.strip(), 300)}",
                           "check the patterns against the run directory")
    return unpack_outputs(data, p.workflow, p.fetch)


def _not_too_much(size: int, files: int, max_bytes: int = FETCH_MAX_BYTES, max_files: int = FETCH_MAX_FILES) -> None:
    """Refuse a stream over the limits, before anything of it is written."""
    over = (f"more than {max_bytes} bytes" if size > max_bytes else
            f"more than {max_files} files" if files > max_files else "")
    if over:
        raise MinihpcError(f"--fetch: the cluster sent {over}, nothing was written",
                           "narrow the --fetch patterns; read large outputs where they are (minihpc shell)")


def unpack_outputs(data: bytes, workflow: Path, patterns: list[str], max_bytes: int = FETCH_MAX_BYTES,
                   max_files: int = FETCH_MAX_FILES) -> tuple[list[str], list[str]]:
    """Write the regular files of a tar stream from the cluster that the
    patterns match beneath `workflow`, never through a symlink; (names
    written, "name: why" for each refused). The stream is untrusted: its
    size and member count are bounded before anything is written."""
    _not_too_much(len(data), 0, max_bytes, max_files)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members, claimed = [], 0
            for m in tar:
                members.append(m)
                claimed += m.size  # what the headers claim, sparse files' full size too
                _not_too_much(claimed, len(members), max_bytes, max_files)
                if m.offset_data + (m.size if m.isreg() and not m.issparse() else 0) > len(data):
                    raise MinihpcError(f"--fetch: the tar stream from the cluster ends inside {clean(m.name)}",
                                       "run again; if it persists, look at the run directory (minihpc shell)")
            got, refused, seen = [], [], set()
            root = os.open(workflow, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                for m in members:
                    if m.name in seen:  # two patterns matched it
                        continue
                    seen.add(m.name)
                    why = _not_fetched(m, patterns)
                    if why is None:
                        body = tar.extractfile(m)
                        why = _write_beneath(root, m.name, body.read()) if body else "unreadable in the stream"
                    if why is None:
                        got.append(m.name)
                    else:
                        refused.append(f"{clean(m.name)}: {why}")
            finally:
                os.close(root)
    except (tarfile.TarError, EOFError, ValueError) as e:
        raise MinihpcError(f"--fetch: what the cluster sent is not a tar stream ({clean(str(e), 200)})",
                           "run again; if it persists, look at the run directory (minihpc shell)") from None
    return sorted(got), refused


def _not_fetched(m: tarfile.TarInfo, patterns: list[str]) -> str | None:
    """Why this member is not written, or None."""
    if not m.isreg():
        kind = ("a symbolic link" if m.issym() else "a hard link" if m.islnk() else "a directory" if m.isdir()
                else "a device, FIFO or other special file")
        return f"{kind}, not a regular file"
    why = _plain_name(m.name)
    if why:
        return why
    # The name itself too: a file .git can point git at any directory's hooks.
    if any(x.casefold() in CONTROL_DIRS for x in m.name.split("/")):
        return "inside a control directory (" + ", ".join(sorted(CONTROL_DIRS)) + ")"
    if not any(matches(pat, m.name) for pat in patterns):
        return "matches no --fetch pattern"
    return None


def _plain_name(name: str) -> str | None:
    """Why `name` is not a plain relative path beneath the workflow, or None."""
    if name.startswith("/"):
        return "an absolute path"
    if ".." in name.split("/"):
        return "reaches outside the workflow (..)"
    if "\\" in name or not name.isprintable():  # surrogates (bytes not UTF-8) are not printable
        return "a name with a backslash, control characters or bytes that are not UTF-8"
    if not name or name != str(PurePosixPath(name)) or name == ".":
        return "not a plain relative path"
    return None


def matches(pattern: str, name: str) -> bool:
    """Whether bash (globstar on, dotglob off), expanding `pattern` in the run
    directory, can name `name`: `*`, `?` and `[...]` within one component,
    `**` alone for any number of them; a leading dot only where the pattern
    has one."""
    return _match(pattern.split("/"), name.split("/"))


def _match(pat: list[str], parts: list[str]) -> bool:
    if not pat:
        return not parts
    head, rest = pat[0], pat[1:]
    if head == "**":
        return any(_match(rest, parts[i:]) for i in range(len(parts) + 1)
                   if not any(x.startswith(".") for x in parts[:i]))
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _match(rest, parts[1:])


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_beneath(root: int, name: str, data: bytes) -> str | None:
    """Write `data` to `name` beneath the directory open as `root`: each
    component opened relative to the one before without following a link, the
    file made anew under a temporary name and renamed over the old one, so
    nothing is written through an existing link or hard link. None, or why not."""
    *dirs, leaf = name.split("/")
    opened: list[int] = []
    at = root
    try:
        for i, d in enumerate(dirs):
            try:
                os.mkdir(d, 0o777, dir_fd=at)
            except FileExistsError:
                pass  # whatever is there is opened, and refused unless a real directory
            try:
                at = os.open(d, DIR_FLAGS, dir_fd=at)
            except OSError as e:
                return _in_the_way("/".join(dirs[:i + 1]), d, at, e)
            opened.append(at)
        try:
            if not stat.S_ISREG(os.stat(leaf, dir_fd=at, follow_symlinks=False).st_mode):
                return _in_the_way(name, leaf, at, None)
        except FileNotFoundError:
            pass
        tmp = f".minihpc-fetch-{secrets.token_hex(8)}"
        fd = os.open(tmp, FILE_FLAGS, 0o666, dir_fd=at)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.rename(tmp, leaf, src_dir_fd=at, dst_dir_fd=at)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=at)
            raise
    except OSError as e:
        return f"could not write it on the host: {e.strerror}"
    finally:
        for fd in opened:
            os.close(fd)
    return None


def _in_the_way(path: str, last: str, at: int, e: OSError | None) -> str:
    """Why `path` on the host (`last` in the directory open as `at`) cannot
    be a directory (e given: opening it as one failed) or the file written."""
    try:
        mode = os.stat(last, dir_fd=at, follow_symlinks=False).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        return f"{clean(path)} on the host is a symbolic link, which is never followed"
    if e is not None and mode and not stat.S_ISDIR(mode):
        return f"{clean(path)} on the host is a file where a directory is expected"
    if e is None:
        return f"{clean(path)} on the host is {'a directory' if stat.S_ISDIR(mode) else 'not a regular file'}"
    return f"could not open {clean(path)} on the host: {e.strerror}"


def clean(text: str, limit: int = 300, table: bool = False) -> str:
    """Text read back from the cluster as it may be shown on a terminal or in
    markdown: control characters (and bytes that were not UTF-8) escaped, no
    backticks (no `|` in a table cell)."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in text[:limit]).replace("`", "'")
    return text.replace("|", "\\|") if table else text


def _on_login_text(rules: list[str] | None) -> str:
    if rules is None:
        return "unknown (snakemake --print-compilation failed)"
    return f"{', '.join(rules)} (the profile did not send them to SLURM)" if rules else "none"


def _environment_text(env: dict | None) -> list[str]:
    if not env:
        return []
    if not env["name"].startswith(pyenv.PREFIX):
        return [f"- Python environment: the cluster's own (`{env['path']}`, {len(env['freeze'])} packages), "
                "no requirements"]
    how = f"reused, made {env['made']}" if env["reused"] else f"made for this run in {env['seconds']} s"
    return [f"- Python environment: `{env['path']}` ({how}) from {env['source']}, over the cluster's own",
            f"  - it adds (pip freeze): {', '.join(f'`{x}`' for x in env['own']) or 'nothing'}",
            f"  - all it sees: {len(env['freeze'])} packages (report.json, environment.freeze)"]


def write_report(report_dir: Path, r: Report) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(asdict(r), indent=1) + "\n")
    lines = [f"# minihpc run: {Path(r.workflow).name}", "",
             f"- command: `{r.command}` in `{r.remote}` on the login node",
             f"- profile: `{r.profile}` ({r.profile_source})",
             f"- exit code: {r.exit_code} (Snakemake's), {r.seconds} s",
             f"- SLURM run ID: {r.run_id or 'none: no job went to SLURM'}",
             f"- non-local rules run on the login node: {_on_login_text(r.nonlocal_rules_on_login)}",
             *_environment_text(r.environment), *(f"- notice: {clean(n, 2000)}" for n in r.notices), "",
             "| job | rule | wildcards | partition | node | state | exit | elapsed s | time limit | requested mem "
             "| max RSS | CPUs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    # Every cell and name below was read back from the cluster (sacct, the run directory): shown through clean.
    lines += ["| " + " | ".join(clean(str(x), 200, table=True) for x in (
        j.job_id, j.rule, j.wildcards, j.partition, j.node, j.state, j.exit_code, j.elapsed_s, j.time_limit,
        j.req_mem, j.max_rss or "n/a", j.cpus)) + " |" for j in r.jobs]
    failed = [j for j in r.jobs if j.error]
    if failed:
        lines += ["", "Why jobs failed (from their kept logs):",
                  *(f"- {clean(j.job_id)} ({clean(j.rule)}{' ' + clean(j.wildcards) if j.wildcards else ''}): "
                    f"`{clean(j.error, 400)}`" for j in failed)]
    drawn = r.timeline.endswith(".svg")
    lines += ["", f"![the run's jobs over time]({r.timeline})" if drawn else f"Timeline: {r.timeline or 'none'}"]
    lines += ["", "Kept SLURM logs:", *(f"- `{clean(x)}`" for x in r.kept_logs or ["(none)"]),
              "", "Fetched outputs:", *(f"- `{clean(x)}`" for x in r.fetched or ["(none)"]), ""]
    if r.fetch_refused:
        lines += ["Not fetched (refused):", *(f"- {x}" for x in r.fetch_refused), ""]
    (report_dir / "report.md").write_text("\n".join(lines))
