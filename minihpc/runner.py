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

from minihpc import ROOT, pyenv
from minihpc.cluster import Cluster, largest_step_rss
from minihpc.errors import BadInput, MinihpcError
from minihpc.sitefile import Site

SNAKEFILES = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")
PROFILE_FILES = ("config.yaml", "config.v8+.yaml", "profile.yaml")
# Defaults, in order, relative to the workflow; then minihpc's own.
DEFAULT_PROFILES = ("profiles/slurm", "workflow/profiles/default")
OWN_PROFILE = ROOT / "profiles/slurm"
# Never synced: Snakemake's state, minihpc's reports, version control.
ALWAYS_EXCLUDED = (".snakemake", ".minihpc", ".git")
REMOTE_PROFILE = ".minihpc/profile"  # where a profile from outside the workflow lands
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Asking Snakemake for software deployment this cluster does not have (in
# Snakemake's arguments or the profile): refused before anything starts.
DEPLOYMENT_ARGS = re.compile(r"^--(use-conda|use-envmodules)$|^--(sdm|software-deployment-method)(=|$)")
DEPLOYMENT_KEYS = re.compile(r"^(use-conda|use-envmodules):\s*(true|yes|on)\b|"
                             r"^(sdm|software-deployment-method):.*\b(conda|env-modules)\b", re.M | re.I)
# A failed job's log: the lines that say why (a Python exception, Snakemake's RuleException).
ERROR_LINE = re.compile(r"^\s*[\w.]*(?:Error|Exception): \S.*$", re.M)
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
    _no_other_deployment(prof, snakemake_args)
    req = pyenv.requirements(workflow, requirements or [], pip or [], no_requirements)
    return Plan(workflow, run_name, prof, str(prof.relative_to(workflow)) if inside else REMOTE_PROFILE,
                snakemake_args, Path(report).resolve() if report else workflow / ".minihpc", fetch, exclude, fresh,
                req)


def _no_other_deployment(profile: Path, args: list[str]) -> None:
    """Conda and environment modules are not on this cluster: a run that
    asks for them would fail in every job, so it is refused before it starts."""
    asked = [a for a in args if DEPLOYMENT_ARGS.match(a)]
    for f in PROFILE_FILES:
        if (profile / f).is_file():
            asked += [m.group(0) for m in DEPLOYMENT_KEYS.finditer((profile / f).read_text())]
    if asked:
        raise BadInput(f"{asked[0]!r} asks for conda or environment modules, which this cluster does not have",
                       "drop it and give the rules' packages as pip requirements: --requirements FILE or --pip PKG")


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
    # The Python environment Snakemake and every job ran in, and what it held (minihpc.pyenv).
    environment: dict | None = None
    # What was said before the run (software deployment this cluster does not have).
    notices: list[str] = field(default_factory=list)
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
    env = pyenv.provide(cluster, p.requirements, say) if p.requirements else pyenv.cluster_own(cluster)
    _sync(p, cluster, remote)
    compiled = compile_workflow(cluster, remote)
    notices = deployment_notices(compiled, env)
    for n in notices:
        say(f"minihpc: {n}")
    cmd = "snakemake --profile " + " ".join(shlex.quote(a) for a in [p.profile_remote, *p.snakemake_args])
    since = cluster.now()
    t = time.monotonic()
    running = cluster.spawn(env.activate() + cmd, workdir=remote)
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
    report.environment, report.notices = asdict(env), notices
    report.jobs = _jobs(cluster, since, report.run_id)
    report.timeline = _timeline(cluster, p.report_dir, report.run_id)
    report.nonlocal_rules_on_login = on_login(output, declared_local(compiled))
    report.kept_logs = _logs(cluster, remote)
    _why_failed(cluster, remote, report.jobs, report.kept_logs)
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
    if p.site and p.profile_remote == REMOTE_PROFILE:
        conf = next(p.profile / f for f in PROFILE_FILES if (p.profile / f).is_file())
        text = p.site.profile(conf.read_text())
        r = cluster.sh(f"cat > {shlex.quote(f'{REMOTE_PROFILE}/{conf.name}')}", workdir=remote, stdin=text.encode())
        if r.rc != 0:
            raise MinihpcError(f"could not write the site's profile in {remote}: {r.out.strip()[:300]}",
                               "is the work directory writable?")


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


def compile_workflow(cluster: Cluster, remote: str) -> str | None:
    """Snakemake's own translation of the Snakefile into Python (what every
    rule declares, includes resolved); None if it fails."""
    r = cluster.sh(f"cd {shlex.quote(remote)} && snakemake --print-compilation")
    return r.out if r.rc == 0 else None


def _rules_declaring(compiled: str, decorator: str) -> dict[str, str]:
    """Each rule whose compiled form carries @workflow.DECORATOR(...), and its argument."""
    found, rule = {}, None
    for line in compiled.splitlines():
        m = re.match(r"@workflow\.rule\(name='([^']+)'", line)
        if m:
            rule = m.group(1)
        elif line.startswith(f"@workflow.{decorator}(") and rule:
            found[rule] = line[len(decorator) + 11:].rstrip(")").strip()
    return found


def declared_local(compiled: str | None) -> set[str] | None:
    """The rules the workflow declares local (`localrules:` or `localrule: True`); None: unknown."""
    if compiled is None:
        return None
    names = set()
    for args in re.findall(r"^workflow\.localrules\((.*?)\)", compiled, re.M | re.S):
        names |= {a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", args)}
    return names | {r for r, v in _rules_declaring(compiled, "localrule").items() if v.startswith("True")}


def deployment_notices(compiled: str | None, env: pyenv.Env) -> list[str]:
    """What to say, before anything is submitted, about `conda:` and
    `envmodules:` directives: this cluster has neither, so Snakemake ignores
    them and runs those rules in the run's one Python environment."""
    if compiled is None:
        return []
    notes = []
    todo = (f"Their packages must be in {env.source}." if env.name.startswith(pyenv.PREFIX) else
            "Give their packages as pip requirements: --requirements FILE or --pip PKG ...")
    for decorator, what in (("conda", "conda: environments"), ("envmodules", "envmodules:")):
        rules = _rules_declaring(compiled, decorator)
        if rules:
            notes.append(f"rule(s) {', '.join(sorted(rules))} declare {what} ({'; '.join(sorted(set(rules.values())))})"
                         f", which this cluster does not have: Snakemake ignores them and runs these rules in the "
                         f"run's Python environment ({env.name}, {env.path}). {todo}")
    return notes


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _why_failed(cluster: Cluster, remote: str, jobs: list[Job], logs: list[str]) -> None:
    """Each failed job's reason from its kept log (the plugin names it JOBID.log)."""
    by_id = {PurePosixPath(x).stem: x for x in logs}
    failed = [j for j in jobs if j.state != "COMPLETED" and j.job_id in by_id][:20]
    if not failed:
        return
    r = cluster.sh(f"cd {shlex.quote(remote)} && for f in " + " ".join(shlex.quote(by_id[j.job_id]) for j in failed)
                   + "; do echo \"@@ $f\"; tail -n 200 \"$f\"; done")
    text = {head.strip(): body for head, _, body in (c.partition("\n") for c in r.out.split("@@ ")[1:])}
    for j in failed:
        lines = list(dict.fromkeys(m.group(0).strip() for m in ERROR_LINE.finditer(text.get(by_id[j.job_id], ""))))
        j.error = " | ".join(lines[:3])[:400]


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


def _write(report_dir: Path, r: Report) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(asdict(r), indent=1) + "\n")
    lines = [f"# minihpc run: {Path(r.workflow).name}", "",
             f"- command: `{r.command}` in `{r.remote}` on the login node",
             f"- profile: `{r.profile}` ({r.profile_source})",
             f"- exit code: {r.exit_code} (Snakemake's), {r.seconds} s",
             f"- SLURM run ID: {r.run_id or 'none: no job went to SLURM'}",
             f"- non-local rules run on the login node: {_on_login_text(r.nonlocal_rules_on_login)}",
             *_environment_text(r.environment), *(f"- notice: {n}" for n in r.notices), "",
             "| job | rule | wildcards | partition | node | state | exit | elapsed s | time limit | requested mem "
             "| max RSS | CPUs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {j.job_id} | {j.rule} | {j.wildcards} | {j.partition} | {j.node} | {j.state} | {j.exit_code} "
              f"| {j.elapsed_s} | {j.time_limit} | {j.req_mem} | {j.max_rss or 'n/a'} | {j.cpus} |" for j in r.jobs]
    failed = [j for j in r.jobs if j.error]
    if failed:
        lines += ["", "Why jobs failed (from their kept logs):",
                  *(f"- {j.job_id} ({j.rule}{' ' + j.wildcards if j.wildcards else ''}): `{j.error}`" for j in failed)]
    drawn = r.timeline.endswith(".svg")
    lines += ["", f"![the run's jobs over time]({r.timeline})" if drawn else f"Timeline: {r.timeline or 'none'}"]
    lines += ["", "Kept SLURM logs:", *(f"- `{x}`" for x in r.kept_logs or ["(none)"]),
              "", "Fetched outputs:", *(f"- `{x}`" for x in r.fetched or ["(none)"]), ""]
    (report_dir / "report.md").write_text("\n".join(lines))
