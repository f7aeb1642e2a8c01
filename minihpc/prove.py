"""`minihpc prove PATH`: the workflow keeps its meaning under its policy.

The course's point is that profiles, retries, executors and staging are
policy, and policy must never change what a workflow computes. `prove` shows
it for the user's own workflow: it runs the workflow twice as a reference
(the local executor on the login node, with a node's cores) and once through
the user's profile (SLURM), each from an empty directory of its own, and
compares every file each run produced by checksum. When the profile stages
job IO through a storage plugin (`default-storage-provider`: on minihpc,
each job's files through its node's scratch), the policy is two policies:
a fourth run goes through the profile with its storage settings left out
(`slurm`), so that a difference is put down to SLURM or to staging, and the
staged run's job logs must show its files stored through the storage.


- a file whose two reference runs differ is nondeterministic (a timestamp):
  said so, and compared by existence and size only, or by the user's own
  command (`--compare CMD`: `CMD REFERENCE POLICY` exits 0 for the same
  meaning), run here on private copies of the bytes whose checksums were
  taken when each run ended;
- a log a rule declares (`log:`) is compared by existence only: it says where
  and when, not what;
- any other difference (a file missing, or other bytes) fails the proof,
  naming the file, the rule that made it and the two runs.

Every run goes through `minihpc run` (the same sync, environment, report and
exit rules); each run's checksums are taken as soon as it ends and kept on
this side, and the policy run starts only once both references' are taken,
so nothing it does (a job, a process left behind) can change what a
reference is compared as.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import io
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from minihpc import ROOT, prove_faults, pyenv
from minihpc.audit import (
    FINDING,
    JOB_STEP_S,
    NOTE,
    OK,
    PLUGIN_FIRST_CHECK_S,
    Check,
    Refusal,
    audit,
    load_profile,
    refused,
    setting,
    suggest,
)
from minihpc.cluster import Cluster
from minihpc.errors import BadInput, MinihpcError
from minihpc.prove_faults import Choice, Injector, Outcome
from minihpc.runner import (
    NAME,
    PROFILE_FILES,
    REMOTE_PROFILE,
    Plan,
    Report,
    clean,
    command,
    environment,
    execute,
    never_synced,
    run_id,
    run_jobs,
    say,
    snakemake_paths,
    write_report,
)

LOCAL_PROFILE = ROOT / "profiles/local"
WORKFLOW_PROFILE = "workflow/profiles/default"  # Snakemake's own default workflow profile
RUNS = ("reference-1", "reference-2", "policy")
RESUME_REFUSED = "the resume was refused"
NOTHING_INCOMPLETE = "the resume refused nothing as incomplete"
# The profile's settings that stage job IO through a storage plugin (and the
# plugins' own, storage-NAME-*): what the `slurm` run leaves out.
STORAGE_KEYS = ("default-storage-provider", "default-storage-prefix", "local-storage-prefix",
                "remote-job-local-storage-prefix", "shared-fs-usage", "storage-")
# What Snakemake prints in a job's log for each output it stores from the
# job's local copy (snakemake/io: "Storing in storage: <query>").
STORED = "Storing in storage:"
# A run's directory on the shared filesystem: <name>.prove-<run>, within NAME's 64.
MAX_NAME = 64 - len(".prove-reference-1")
# What one run may leave to compare, at most (its listing is held in memory).
MAX_FILES = 100_000
SAME, DIFFERS, MISSING, NONDETERMINISTIC, LOG, ONLY_POLICY = (
    "same", "differs", "missing under the policy", "nondeterministic", "log", "only under the policy")
FAILING = (DIFFERS, MISSING)


@dataclass
class Produced:
    """A file a run left: its checksum (a symlink: `link:` and its target) and size."""

    digest: str
    size: int


@dataclass
class Finding:
    path: str
    rule: str
    verdict: str  # one of SAME ... ONLY_POLICY
    why: str = ""
    run: str = "policy"  # the run compared with the references: policy, or slurm (the policy without staging)


@dataclass
class Proof:
    workflow: str
    profile: str
    verdict: str  # "pass" or "fail"
    summary: str
    runs: dict[str, dict] = field(default_factory=dict)  # each run: exit code, seconds, directory, report
    findings: list[Finding] = field(default_factory=list)
    audit: list[Check] = field(default_factory=list)
    # The profile the audit suggests, as a unified diff of the profile's settings, and where it is written whole.
    suggested_diff: str = ""
    suggested_profile: str = ""
    # --compare's command (a nondeterministic file's judge), or "" for existence and size.
    compare: str = ""
    # The faulted run (minihpc.prove_faults): each fault's verdict, the files
    # that differ from the reference under faults, and any fault not undone.
    faults: list[Outcome] = field(default_factory=list)
    fault_findings: list[Finding] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)


def prove_plan(p: Plan) -> dict[str, Plan]:
    """The three runs of a proof, each its own directory and report, all
    from empty directories; the references through the local executor."""
    if len(p.name) > MAX_NAME:
        raise BadInput(f"--name {p.name!r} is too long for prove's run directories (at most {MAX_NAME} characters)",
                       "give a shorter one: --name NAME")
    reference = dataclasses.replace(p, profile=LOCAL_PROFILE, profile_remote=REMOTE_PROFILE, fetch=[])
    runs = {}
    for run in (*RUNS, "slurm", "faults"):
        base = p if run in ("policy", "slurm", "faults") else reference
        runs[run] = dataclasses.replace(base, name=f"{p.name}.prove-{run}", fresh=True,
                                        report_dir=p.report_dir / run)
        assert NAME.fullmatch(runs[run].name)
    return runs


def _storage_key(key: str) -> bool:
    key = key.replace("_", "-")
    return any(key == k or (k.endswith("-") and key.startswith(k)) for k in STORAGE_KEYS)


def stages(conf: dict, args: list[str]) -> bool:
    """Whether the policy stages job IO through a storage plugin: a default
    storage provider in the profile or among Snakemake's arguments."""
    return bool(setting(conf, "default-storage-provider")) or any(
        a.split("=", 1)[0] == "--default-storage-provider" for a in args)


def unstaged_args(args: list[str]) -> list[str]:
    """Snakemake's arguments without the storage flags (and their values:
    one each, every one for --shared-fs-usage, which takes several)."""
    out, i = [], 0
    while i < len(args):
        flag = args[i]
        i += 1
        if not flag.startswith("--") or not _storage_key(flag[2:].split("=", 1)[0]):
            out.append(flag)
        elif "=" not in flag:
            many = flag == "--shared-fs-usage"
            while i < len(args) and not args[i].startswith("-"):
                i += 1
                if not many:
                    break
    return out


def unstaged_profile(profile: Path, conf: dict, out: Path) -> Path:
    """A copy of the profile's directory whose settings leave out staging
    (STORAGE_KEYS): the `slurm` run's profile. Its other files come along."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(profile, out, symlinks=True)
    for name in PROFILE_FILES:
        (out / name).unlink(missing_ok=True)
    kept = {k: v for k, v in conf.items() if not _storage_key(k)}
    (out / "config.yaml").write_text("# minihpc prove: the profile without its storage settings (its `slurm` run)\n"
                                     + yaml.safe_dump(kept, sort_keys=False, default_flow_style=False))
    return out


def staging_check(cluster: Cluster, report: Report) -> Check:
    """Whether the staged run's jobs stored their outputs through the storage
    (each job's kept SLURM log has Snakemake's line "Storing in storage: ..."
    at a line's start): a profile that asks for staging and a run that did
    not stage is the course's "storage plugin not active". (The log is the
    job's, and a rule could print that line itself: this is the audit's
    evidence, never the meaning's.)"""
    jobs = [j for j in report.jobs if j.state == "COMPLETED"]
    by_id = {PurePosixPath(x).stem: x for x in report.kept_logs}
    logs = [by_id[j.job_id] for j in jobs if j.job_id in by_id]
    if not jobs:
        return Check("staging", NOTE, "no job of the staged run completed: nothing to show it staged")
    if not logs:
        return Check("staging", NOTE, f"none of the staged run's {len(jobs)} job(s) kept its SLURM log: staging "
                     "not shown", "`slurm-keep-successful-logs: true`")
    r = cluster.sh(f"cd {shlex.quote(report.remote)} && for f in " + " ".join(shlex.quote(x) for x in logs)
                   + f"; do tail -c 262144 -- \"$f\" | grep -q {shlex.quote('^' + STORED + ' ')} && echo \"$f\"; done")
    staged = sum(x in set(r.out.splitlines()) for x in logs)
    seen = f"{staged} of {len(logs)} job(s) stored their outputs through the storage (their logs: '{STORED}')"
    if staged == len(logs):
        return Check("staging", OK, seen)
    return Check("staging", FINDING, seen + ": the profile asks for staging and those jobs did not stage",
                 "check the storage settings reach the jobs (`default-storage-provider`, "
                 "`remote-job-local-storage-prefix` on the nodes' scratch) and that the storage plugin is installed")


def workdir_of(args: list[str]) -> str:
    """Where Snakemake works in the run directory (-d), or '' for its top."""
    dirs = [v for flag, v in snakemake_paths(args) if flag == "--directory"]
    return str(PurePosixPath(dirs[-1])) if dirs else ""


def sources(workflow: Path, exclude: list[str]) -> dict[str, str]:
    """What is synced (its checksums, by path): a file the run left with the
    same bytes was not produced by it."""
    out = {}
    for f in sorted(workflow.rglob("*")):
        rel = f.relative_to(workflow).as_posix()
        if never_synced(rel, exclude):
            continue
        if f.is_symlink():
            out[rel] = "link:" + str(f.readlink())
        elif f.is_file():
            with f.open("rb") as data:  # a large input is read a block at a time, not held whole
                out[rel] = hashlib.file_digest(data, "sha256").hexdigest()
    return out


def snapshot(cluster: Cluster, remote: str) -> dict[str, Produced]:
    """Every regular file and symlink under `remote` (Snakemake's and minihpc's
    own directories aside), with its checksum and size."""
    prune = f"cd {shlex.quote(remote)} && find . \\( -path ./.snakemake -o -path ./.minihpc \\) -prune -o"
    listing = _read(cluster, remote, f"{prune} -type f -printf 'f\\0%s\\0%P\\0' "
                                     "-o -type l -printf 'l\\0%s\\0%P\\0%l\\0'")
    sums = _read(cluster, remote, f"{prune} -type f -print0 | head -z -n {MAX_FILES + 1} | xargs -0r sha256sum -z")
    return parse_snapshot(listing, sums, remote)


def _read(cluster: Cluster, remote: str, script: str) -> bytes:
    rc, data, err = cluster.pipe(f"set -o pipefail; {script} | head -c {64 * 2**20}")
    if rc != 0:
        raise MinihpcError(f"could not list what the run left in {remote}: {clean(err.strip(), 300)}",
                           "is the shared filesystem up? minihpc status")
    return data


def parse_snapshot(listing: bytes, sums: bytes, remote: str = "the run directory") -> dict[str, Produced]:
    """find's NUL-separated listing (kind, size, name[, link target]) and
    sha256sum -z's lines, read as untrusted: names are never parsed for
    anything but themselves."""
    fields = listing.split(b"\0")
    found: dict[str, Produced] = {}
    i = 0
    while i + 2 < len(fields):
        kind, size, name = fields[i:i + 3]
        i += 3
        path = name.decode(errors="surrogateescape")
        if kind == b"l" and i < len(fields):
            found[path] = Produced("link:" + fields[i].decode(errors="surrogateescape"), int(size or 0))
            i += 1
        elif kind == b"f" and size.isdigit():
            found[path] = Produced("", int(size))
        else:
            raise MinihpcError(f"the listing of {remote} is not find's", "run prove again; report it if it persists")
        if len(found) > MAX_FILES:
            raise MinihpcError(f"the run left more than {MAX_FILES} files in {remote}",
                               "prove a smaller part of the workflow (give targets after --)")
    for entry in sums.split(b"\0"):
        digest, sep, name = entry.partition(b"  ./")
        path = name.decode(errors="surrogateescape")
        if sep and len(digest) == 64 and path in found and not found[path].digest:
            found[path].digest = digest.decode()
    return found


def produced(left: dict[str, Produced], synced: dict[str, str]) -> dict[str, Produced]:
    """What a run made: what it left that was not synced as it is."""
    return {p: f for p, f in left.items() if synced.get(p) != f.digest}


def rules_of(cluster: Cluster, p: Plan, remote: str, env_activate: str) -> tuple[dict[str, str], set[str]]:
    """Which rule made each output, and the logs rules declare, from
    Snakemake's summary of the run (paths relative to the run directory)."""
    # The run's own arguments: its targets, config and files make its DAG.
    r = cluster.sh(env_activate + "snakemake --summary " + " ".join(shlex.quote(a) for a in p.snakemake_args),
                   workdir=remote, timeout=300)
    by_path, logs = {}, set()
    prefix = workdir_of(p.snakemake_args)
    for line in r.out.splitlines():
        cols = line.split("\t")
        if len(cols) < 4 or cols[0] == "output_file":
            continue
        out, rule, logfiles = cols[0], cols[2], cols[3]
        by_path[str(PurePosixPath(prefix, out))] = rule
        for x in logfiles.split(","):
            if x.strip() and x.strip() != "-":
                logs.add(log := str(PurePosixPath(prefix, x.strip())))
                by_path[log] = rule
    return by_path, logs


# How many nondeterministic files --compare's command is run on, at most, and
# how large (both copies are held in memory here); the rest are compared by
# existence and size, and the proof's summary says how many.
MAX_COMPARED, MAX_COMPARED_BYTES = 200, 64 * 2**20


def compare_command(cmd: str | None, workflow: str | Path = ".") -> list[str] | None:
    """--compare's command as words (split as a shell would, never run by one),
    checked before anything runs: it must be here (on PATH, or a path in the
    workflow's directory), where it runs."""
    if cmd is None:
        return None
    try:
        words = shlex.split(cmd)
    except ValueError as e:
        raise BadInput(f"--compare {cmd!r} cannot be split into words: {e}",
                       "quote it as a shell would, e.g. --compare 'python3 scripts/same.py'") from None
    if not words:
        raise BadInput("--compare is empty", "give a command, run as CMD REFERENCE_FILE POLICY_FILE "
                                             "(exit 0: the same meaning)")
    if shutil.which(words[0]) is None and shutil.which(str(Path(workflow, words[0]))) is None:
        raise BadInput(f"--compare: no command {words[0]!r} on this machine (it runs here, in the workflow's "
                       "directory)", "give one on PATH, e.g. --compare 'python3 scripts/same.py', or an executable "
                       "path in the workflow")
    return words


def fetched(cluster: Cluster, path: str, size: int, digest: str) -> bytes | str:
    """A file a run made, as the lab user reads it (never root: a link the
    workflow planted reaches nothing its user could not read), at most one
    byte more than its snapshot's size; or why not: unreadable, or not the
    bytes whose checksum was taken when its run ended."""
    rc, data, err = cluster.pipe(f"timeout 60 head -c {size + 1} -- {shlex.quote(path)}", timeout=120)
    if rc != 0:
        return f"could not read {path}: {clean(err.strip(), 200)}"
    if hashlib.sha256(data).hexdigest() != digest:
        return f"{path} changed after its run's checksums were taken"
    return data


def same_by_command(cluster: Cluster, words: list[str], workflow: Path, reference: tuple[str, int, str],
                    policy: tuple[str, int, str]) -> tuple[bool, str]:
    """`words REFERENCE POLICY` on this machine, in the workflow's directory
    here (the caller's copy: no job reaches it), on private copies of the two
    files (each (path, size, sha256) from its run's snapshot) made from the
    bytes whose checksums were taken: nothing the workflow does on the
    cluster changes what the command reads or how it runs."""
    got = [fetched(cluster, *f) for f in (reference, policy)]
    bad = [g for g in got if isinstance(g, str)]
    if bad:
        return False, "; ".join(bad)
    with tempfile.TemporaryDirectory(prefix="minihpc-compare.") as d:
        paths = [Path(d, name) for name in ("reference", "policy")]
        for path, data in zip(paths, got, strict=True):
            path.write_bytes(data)  # type: ignore[arg-type]
        try:
            r = subprocess.run([*words, *map(str, paths)], cwd=workflow, capture_output=True, text=True,
                               timeout=300, stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"{shlex.join(words)} could not run: {clean(str(e), 200)}"
    said = clean((r.stdout + r.stderr).strip(), 300)
    return r.returncode == 0, f"{shlex.join(words)} exited {r.returncode}" + (f": {said}" if said else "")


def compare(ref1: dict[str, Produced], ref2: dict[str, Produced], policy: dict[str, Produced],
            rules: dict[str, str], logs: set[str],
            by_command: Callable[[str], tuple[bool, str]] | None = None) -> list[Finding]:
    """Each file a run produced, judged (see the module's text); `by_command`
    (--compare's, given a path) judges a nondeterministic file both runs made."""
    compared = 0
    findings = []
    for path in sorted(set(ref1) | set(policy)):
        rule = rules.get(path, "")
        a, b, c = ref1.get(path), ref2.get(path), policy.get(path)
        if a is None:
            findings.append(Finding(path, rule, ONLY_POLICY, "made under the policy only (a log or a profile's file?)"))
        elif path in logs:
            findings.append(Finding(path, rule, LOG if c else MISSING, "a declared log: compared by existence"))
        elif c is None:
            findings.append(Finding(path, rule, MISSING, "the reference runs made it; the policy run did not"))
        elif b is None or a.digest != b.digest:  # the references disagree: not the policy's doing
            if by_command is not None and compared < MAX_COMPARED and not a.digest.startswith("link:") \
                    and not c.digest.startswith("link:") and max(a.size, c.size) <= MAX_COMPARED_BYTES:
                compared += 1
                same, said = by_command(path)
                verdict = NONDETERMINISTIC if same else DIFFERS
                why = f"its two reference runs differ: compared by --compare: {said}"
            elif b is not None and a.size == b.size:
                verdict = NONDETERMINISTIC if c.size == a.size else DIFFERS
                why = f"its two reference runs differ: compared by existence and size ({a.size} bytes, " \
                      f"{c.size} under the policy)"
            else:
                verdict = NONDETERMINISTIC
                why = "its two reference runs differ, in size too (or one lacks it): compared by existence"
            findings.append(Finding(path, rule, verdict, why))
        elif c.digest != a.digest:
            findings.append(Finding(path, rule, DIFFERS, f"sha256 {a.digest[:16]}... in both reference runs, "
                                                         f"{c.digest[:16]}... under the policy"))
        else:
            findings.append(Finding(path, rule, SAME))
    return findings


def changed(under_faults: list[Finding]) -> list[tuple[str, str]]:
    """The files the faulted run made that differ from the references ((path,
    rule)). A file it did not make is a lost job's, judged by how each job
    ended (and failing the proof all the same), never a fault's changed output:
    else a fault on the whole run (the lag) would be blamed for the file
    another fault's job never wrote."""
    return [(f.path, f.rule) for f in under_faults if f.verdict == DIFFERS]


def attribute(staged: list[Finding], plain: list[Finding]) -> list[Finding]:
    """The staged run's findings and the unstaged (`slurm`) run's, each
    difference put down to staging (the run without it kept the file) or not."""
    without = {f.path: f for f in plain}
    for f in staged:
        other = without.get(f.path)
        if f.verdict in FAILING and other is not None:
            f.why += ("; the same without staging (the slurm run): staging changes it" if other.verdict not in FAILING
                      else f"; without staging too ({other.verdict}): not staging's doing")
    for f in plain:
        f.run = "slurm"
    return staged + plain


def prove(p: Plan, cluster: Cluster, out=sys.stdout, compare_with: list[str] | None = None,
          faults: Choice | None = None) -> Proof:
    """Run the three runs, compare (a nondeterministic file by the command
    `compare_with`, if given: compare_command), then the faulted run with
    `faults` (prove_faults.choose), write the proof's report; returns it."""
    runs = prove_plan(p)
    synced = sources(p.workflow, p.exclude)
    left: dict[str, dict[str, Produced]] = {}
    reports: dict[str, Report] = {}
    cores = str(cluster.facts.cpus)
    conf = load_profile(p.profile)
    # Snakemake also reads the workflow's own profile, whose settings win over the profile's.
    both = {**conf, **load_profile(p.workflow / WORKFLOW_PROFILE)}
    staged = stages(both, p.snakemake_args)
    if staged:  # the slurm run: both profiles' settings but storage, in one, and no workflow profile
        runs["slurm"] = dataclasses.replace(
            runs["slurm"], profile=unstaged_profile(p.profile, both, p.report_dir / "unstaged-profile"),
            profile_remote=REMOTE_PROFILE,
            snakemake_args=["--workflow-profile", "none", *unstaged_args(p.snakemake_args)])
    what = {"policy": "through the profile" + (", staging through the storage" if staged else ""),
            "slurm": "through the profile without its storage settings"}
    local = "local executor on the login node, a node's cores"
    said: dict[str, Tee] = {}
    compiled: dict[str, str | None] = {}  # the workflow compiled once, for every run (the same sources)

    def one(run: str, shown) -> tuple[Report, dict[str, Produced], tuple[dict[str, str], set[str]]]:
        rp = runs[run]
        say(f"minihpc prove: run {run} ({what.get(run, local)}) in {rp.remote(cluster.facts.shared)}")
        if run not in what:  # a reference; no workflow profile (workflow/profiles/default) on top of the local one
            rp = dataclasses.replace(rp, snakemake_args=["--cores", cores, "--workflow-profile", "none",
                                                         *rp.snakemake_args])
        t = time.monotonic()
        shown = said[run] = Tee(shown)  # Snakemake's output, kept for the audit (the jobs sbatch refused)
        report = execute(rp, cluster, shown, compiled_once=compiled)
        remote = rp.remote(cluster.facts.shared)
        made = produced(snapshot(cluster, remote), synced)  # now: nothing later can change it
        say(f"minihpc prove: run {run} exited {report.exit_code} after {round(time.monotonic() - t, 1)} s; "
            f"{len(made)} file(s) made")
        if run in ("reference-2", "slurm"):  # its rules and logs are another run's: no second summary
            return report, made, ({}, set())
        env = pyenv.Env(**report.environment) if report.environment else None
        return report, made, rules_of(cluster, rp, remote, env.activate() if env else "")

    # The two references side by side (both on the login node; the second's
    # output kept until the first's is shown), unless they would both make
    # the run's Python environment. The policy run after them, alone: none of
    # its jobs can touch a reference before its checksums are taken.
    quiet = io.StringIO()
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(one, "reference-2", quiet) if p.requirements is None else None
        reports["reference-1"], left["reference-1"], (rules, logs) = one("reference-1", out)
        if second is None and reports["reference-1"].exit_code == 0:
            second = pool.submit(one, "reference-2", quiet)
        if second is not None:
            reports["reference-2"], left["reference-2"], _ = second.result()
            out.write(f"\nminihpc prove: the output of run reference-2:\n{quiet.getvalue()}")
    if reports["reference-1"].exit_code == 0:
        if staged:  # one policy at a time, each after the references' checksums
            reports["slurm"], left["slurm"], _ = one("slurm", out)
        reports["policy"], left["policy"], (by_path, policy_logs) = one("policy", out)
        rules, logs = {**by_path, **rules}, logs | policy_logs
    proof = Proof(str(p.workflow), str(p.profile_remote), "fail", "")
    proof.runs = {run: run_entry(run, r, runs[run], len(left.get(run, {}))) for run, r in reports.items()}
    ref_rc = reports["reference-1"].exit_code
    if ref_rc != 0:
        proof.summary = (f"the workflow fails without the policy too (reference run exit {ref_rc}): fix the workflow "
                         f"first; its report: {proof.runs['reference-1']['report']}")
        write(p.report_dir, proof)
        return proof
    def by_command(run: str) -> Callable[[str], tuple[bool, str]] | None:
        if not compare_with:
            return None
        ref_dir, run_dir = reports["reference-1"].remote, reports[run].remote

        def judge(path: str) -> tuple[bool, str]:
            ref, made = left["reference-1"][path], left[run][path]
            return same_by_command(cluster, compare_with, p.workflow, (f"{ref_dir}/{path}", ref.size, ref.digest),
                                   (f"{run_dir}/{path}", made.size, made.digest))
        return judge
    proof.compare = shlex.join(compare_with) if compare_with else ""
    proof.findings = compare(left["reference-1"], left.get("reference-2", {}), left["policy"], rules, logs,
                             by_command("policy"))
    if staged:
        proof.findings = attribute(proof.findings, compare(left["reference-1"], left.get("reference-2", {}),
                                                           left["slurm"], rules, logs, by_command("slurm")))
    policy = reports["policy"]
    injector: Injector | None = None
    if faults and faults.left_out:
        say(f"minihpc prove: left out of the default faults: {', '.join(faults.left_out)} (they need a second "
            "compute node: minihpc up --nodes 2)")
    failed_faults = ""
    if faults and faults.faults and policy.exit_code == 0:
        try:
            injector, made = faulted(runs["faults"], cluster, out, faults, conf, synced, rules, logs, policy,
                                     compiled)
        except MinihpcError as e:  # the proof so far is kept, and says why the faults were not proven
            injector, failed_faults = None, f"the faulted run could not be made: {e.what}"
            proof.faults = [Outcome(n, why=failed_faults) for n in faults.faults]
    if injector is not None:
        r = reports["faults"] = injector.report
        proof.runs["faults"] = run_entry("faults", r, runs["faults"], len(made))
        under = compare(left["reference-1"], left.get("reference-2", {}), made, rules, logs, None)
        proof.fault_findings = [f for f in under if f.verdict in FAILING]
        proof.faults = prove_faults.judge(injector, r, injector.output, changed(proof.fault_findings), conf,
                                          eio_failures(cluster, r, injector.target))
        proof.undone = injector.undone
    elif faults and faults.faults:
        proof.faults = [Outcome(n, why="the run through the profile failed without faults: no faulted run")
                        for n in faults.faults]
    checked = audit(conf, policy.jobs, policy.nonlocal_rules_on_login, submit_limit(cluster, conf),
                    overhead(conf), injector.lag if injector else None, node_sizes(cluster),
                    [ask_sbatch(cluster, conf, r) for r in refused(said["policy"].getvalue())],
                    lost_session(proof.faults))
    proof.audit = checked.checks + ([staging_check(cluster, policy)] if staged else [])
    if checked.changes:
        proof.suggested_diff, proof.suggested_profile = suggested(p.report_dir, conf, checked.changes)
    bad = [f for f in proof.findings if f.verdict in FAILING]
    found = [c for c in proof.audit if c.verdict == FINDING]
    failed = [r for r in ("reference-2", "slurm", "policy") if r in reports and reports[r].exit_code != 0]
    said = [f"the {r} run exited {reports[r].exit_code}" for r in failed]
    if bad:
        said.append(f"{len(bad)} file(s) differ under the policy: " + ", ".join(
            f"{f.path} ({f.rule or 'rule unknown'}): {f.verdict}" + (f" in the {f.run} run" if staged else "")
            for f in bad[:5]))
    if found:
        said.append(f"{len(found)} profile finding(s): " + ", ".join(
            f"{c.area}{' (' + c.rule + ')' if c.rule else ''}" for c in found[:8]))
    hurt = [o for o in proof.faults if o.verdict in prove_faults.BAD]
    if failed_faults:
        said.append(failed_faults)
    if hurt:
        said.append(f"{len(hurt)} fault(s) not survived or not proven: " + ", ".join(
            f"{o.fault} ({o.verdict})" for o in hurt))
    if injector is not None and injector.report.exit_code != 0 and not hurt:
        said.append(f"the faulted run exited {injector.report.exit_code}")
    if proof.fault_findings:
        said.append(f"{len(proof.fault_findings)} file(s) differ under the faults: " + ", ".join(
            f"{f.path} ({f.rule or 'rule unknown'}): {f.verdict}" for f in proof.fault_findings[:5]))
    if proof.undone:
        said.append("a fault was not undone: " + "; ".join(proof.undone))
    if said:
        proof.summary = "; ".join(said)
    else:
        kept = sum(f.verdict == SAME and f.run == "policy" for f in proof.findings)
        nondet = [f for f in proof.findings if f.verdict == NONDETERMINISTIC and f.run == "policy"]
        judged = sum("compared by --compare" in f.why for f in nondet)
        how = ("--compare" if judged == len(nondet) else
               "existence and size" if judged == 0 else f"--compare for {judged}, existence and size for the rest")
        proof.verdict = "pass"
        survived = [o.fault for o in proof.faults if o.verdict == prove_faults.SURVIVED]
        proof.summary = ("the workflow keeps its meaning under the policy"
                         + (" (through SLURM, with its staging and without)" if staged else "")
                         + f": {kept} file(s) identical"
                         + (f", {len(nondet)} nondeterministic (compared by {how})" if nondet else "")
                         + (f"; it survived {', '.join(survived)} with the same outputs" if survived else "")
                         + "; the profile fits what the run showed")
    write(p.report_dir, proof)
    return proof


def run_entry(run: str, r: Report, rp: Plan, files: int) -> dict:
    """One run in the proof's report: its exit code, seconds, directory, own
    report, files made, and its timeline picture (relative to the proof's
    report) or why there is none."""
    return {"exit_code": r.exit_code, "seconds": r.seconds, "directory": r.remote,
            "report": str(rp.report_dir / "report.md"), "files": files,
            "timeline": f"{run}/{r.timeline}" if r.timeline.endswith(".svg") else r.timeline}


class Tee(io.StringIO):
    """Keeps what is written and passes it on (Snakemake's output: shown, and read for the verdicts)."""

    def __init__(self, shown) -> None:
        super().__init__()
        self.shown = shown

    def write(self, text: str) -> int:
        self.shown.write(text)
        return super().write(text)

    def flush(self) -> None:
        self.shown.flush()


def faulted(rp: Plan, cluster: Cluster, out, choice: Choice, conf: dict, synced: dict[str, str],
            rules: dict[str, str], logs: set[str], policy: Report,
            compiled_once: dict[str, str | None] | None = None) -> tuple[Injector, dict[str, Produced]]:
    """The run through the profile with the faults on it: its injector (with
    its report, output and what could not be undone) and what it made, read
    once every fault is undone."""
    remote = rp.remote(cluster.facts.shared)
    outputs = {path: rule for path, rule in rules.items() if path not in logs}
    target = prove_faults.eio_target(outputs, {j.rule for j in policy.jobs})
    resources = setting(conf, "default-resources", {}) or {}
    sbatch = ["--mem=100M", "--time=2"] + [f"--{opt}={resources[key]}" for key, opt in
                                           (("slurm_partition", "partition"), ("slurm_account", "account"))
                                           if resources.get(key)]
    inj = Injector(cluster, choice, remote, target, sbatch)
    say(f"minihpc prove: run faults (through the profile, with {', '.join(choice.faults)}) in {remote}")
    tee = Tee(out)
    inj.said_run_id = lambda: run_id(tee.getvalue(), last=True)
    since = cluster.now()
    try:
        reports = [execute(rp, cluster, tee, before_run=inj.before, after_run=inj.first_run_ended,
                           compiled_once=compiled_once)]
        if inj.hung_up:
            reports += resume(rp, cluster, tee, inj, compiled_once)
            inj.after()  # the lost session's jobs cancelled, if they still ran: the first report is read again
            reports[0].jobs = run_jobs(cluster, since, reports[0].run_id)
        inj.report = merged(rp, reports)
    finally:
        inj.undone = inj.after()  # already done when Snakemake exited, unless something failed before
        inj.output = tee.getvalue()
    made = produced(snapshot(cluster, remote), synced)
    say(f"minihpc prove: run faults exited {inj.report.exit_code} after {inj.report.seconds} s; {len(made)} file(s) "
        "made")
    return inj, made


def resume(rp: Plan, cluster: Cluster, out: Tee, inj: Injector,
           compiled_once: dict[str, str | None] | None = None) -> list[Report]:
    """After session-lost: what its user does on coming back, at once: unlock
    (a killed run's lock always stays) and run the same command again. If
    Snakemake refuses the outputs the lost session left incomplete, that is the
    fault's verdict (failed); minihpc then does what the fix says (cancel the
    lost session's jobs, --rerun-incomplete) so the faults after it land."""
    o = inj.outcomes["session-lost"]
    again = dataclasses.replace(rp, fresh=False)
    unlock = cluster.sh(environment(rp, cluster).activate() + command(again, "--unlock"),
                        workdir=rp.remote(cluster.facts.shared), timeout=300)
    o.evidence.append(f"snakemake --unlock, as after any killed run: exit {unlock.rc}")
    say("minihpc prove: the session came back: the same command again, in the same directory")
    start = len(out.getvalue())
    reports = [execute(again, cluster, out, compiled_once=compiled_once)]
    files = incomplete_files(out.getvalue()[start:])
    if reports[-1].exit_code != 0 and files is not None:
        o.verdict, o.fix = prove_faults.FAILED, prove_faults.FIX["session-lost"]
        o.why = (f"{RESUME_REFUSED}: IncompleteFilesException for {len(files)} file(s) the lost session left "
                 f"marked incomplete ({', '.join(files[:4])}{', ...' if len(files) > 4 else ''})")
        o.evidence.append(inj.cancel_lost())
        say("minihpc prove: the resume was refused (IncompleteFilesException); once more as the fix says: the lost "
            "session's jobs cancelled, --rerun-incomplete")
        reports.append(execute(dataclasses.replace(again, snakemake_args=[*rp.snakemake_args, "--rerun-incomplete"]),
                               cluster, out, compiled_once=compiled_once))
    else:
        o.evidence.append(f"{NOTHING_INCOMPLETE} (exit {reports[-1].exit_code})")
    return reports


def lost_session(outcomes: list[Outcome]) -> tuple[bool, str] | None:
    """For the audit: whether the resume after session-lost was refused for
    what it left incomplete, and what was seen (None: no session was lost)."""
    o = next((o for o in outcomes if o.fault == "session-lost" and o.at_s is not None), None)
    if o is None:
        return None
    if o.verdict == prove_faults.FAILED and o.why.startswith(RESUME_REFUSED):
        return True, o.why
    return False, f"after the lost session the same command went on: {NOTHING_INCOMPLETE} (the fault: {o.verdict})"


def incomplete_files(output: str) -> list[str] | None:
    """The files Snakemake refused as incomplete (IncompleteFilesException), or None if it refused none."""
    if "IncompleteFilesException:" not in output:
        return None
    _, found, listed = output.rpartition("\nIncomplete files:\n")
    files = []
    for line in listed.splitlines() if found else []:
        if not line.strip():
            break
        files.append(clean(line.strip(), 200))
    return files


def merged(rp: Plan, reports: list[Report]) -> Report:
    """One report for a run resumed after a lost session: every run's jobs
    (sacct, by each one's run ID), the last one's exit code and picture."""
    if len(reports) == 1:
        return reports[0]
    last = dataclasses.replace(reports[-1], command=reports[0].command,
                               seconds=round(sum(r.seconds for r in reports), 1))
    last.jobs = list({j.job_id: j for r in reports for j in r.jobs}.values())
    write_report(rp.report_dir, last)
    return last


def eio_failures(cluster: Cluster, report: Report, target: tuple[str, str] | None) -> list[str]:
    """The target rule's failed jobs whose kept log shows the EIO."""
    if target is None:
        return []
    by_id = {PurePosixPath(x).stem: x for x in report.kept_logs}
    ids = [j.job_id for j in report.jobs if j.rule == target[1] and j.state != "COMPLETED" and j.job_id in by_id]
    if not ids:
        return []
    r = cluster.sh(f"cd {shlex.quote(report.remote)} && for f in " + " ".join(shlex.quote(by_id[i]) for i in ids)
                   + "; do tail -c 65536 -- \"$f\" | grep -q 'Input/output error' && echo \"$f\"; done")
    seen = set(r.out.splitlines())
    return [i for i in ids if by_id[i] in seen]


def node_sizes(cluster: Cluster) -> dict[str, tuple[int, int]]:
    """Each compute node's CPUs and memory (MiB), as sinfo gives them (a site's too); {} if it does not answer."""
    try:
        rows = cluster.nodes()
    except MinihpcError:
        return {}
    return {n["node"]: (int(n["cpus"]), int(n["mem"])) for n in rows if n["cpus"].isdigit() and n["mem"].isdigit()}


def ask_sbatch(cluster: Cluster, conf: dict, r: Refusal) -> Refusal:
    """A refused group whose words Snakemake's output lost: SLURM's own, from
    `sbatch --test-only` (nothing is submitted) with its members' requests
    added up, in the profile's partition and account."""
    if r.said or not r.mem_mb:
        return r
    resources = setting(conf, "default-resources", {}) or {}
    where = [f"--{opt}={resources[key]}" for key, opt in (("slurm_partition", "partition"),
                                                          ("slurm_account", "account")) if resources.get(key)]
    t = cluster.sh(shlex.join(["sbatch", "--test-only", *where, f"--mem={r.mem_mb}", f"--cpus-per-task={r.threads}",
                               "--wrap", "true"]) + " 2>&1")
    # It refuses with "allocation failure: <why>" (exit 1); it accepts with "Job N to start at ...".
    said = [line.strip() for line in t.out.splitlines() if line.strip()]
    if t.rc == 0 or not said:
        return r
    return dataclasses.replace(r, said=f"{clean(said[-1], 200)} (sbatch --test-only, its jobs' requests added up)")


def submit_limit(cluster: Cluster, conf: dict) -> int | None:
    """MaxSubmitJobsPerUser of the QOS the profile's jobs ask for (else normal)."""
    wanted = (setting(conf, "default-resources", {}) or {}).get("slurm_qos", "normal")
    for q in cluster.qos():
        if q["Name"] == wanted and q["MaxSubmitPU"].isdigit():
            return int(q["MaxSubmitPU"])
    return None


def overhead(conf: dict) -> float:
    """SLURM's own time for a job as a workflow pays it, whatever the job
    does: Snakemake starting in the job, and the plugin's wait before its
    first status check. (Not the queue wait: that is other jobs' doing.)"""
    return JOB_STEP_S + float(setting(conf, "slurm-init-seconds-before-status-checks", PLUGIN_FIRST_CHECK_S))


def suggested(report_dir: Path, conf: dict, changes: dict) -> tuple[str, str]:
    """The suggested profile written whole beside the report, and the diff of
    its settings against the profile's (comments aside)."""
    new = suggest(conf, changes)
    before = yaml.safe_dump(conf, sort_keys=True, default_flow_style=False).splitlines(keepends=True)
    after = yaml.safe_dump(new, sort_keys=True, default_flow_style=False).splitlines(keepends=True)
    out = report_dir / "suggested-profile"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text("# minihpc prove's suggestion: the profile's settings with the audit's "
                                     "changes (comments are not kept)\n" + "".join(after))
    diff = "".join(difflib.unified_diff(before, after, "profile", "suggested-profile/config.yaml"))
    return diff, str(out)


def write(report_dir: Path, proof: Proof) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "report.json").write_text(json.dumps(asdict(proof), indent=1) + "\n")
    lines = [f"# minihpc prove: {Path(proof.workflow).name}", "",
             f"**{proof.verdict.upper()}**: {clean(proof.summary, 2000)}", "",
             f"- policy: the profile `{clean(proof.profile)}`; reference: the local executor on the login node, "
             "run twice",
             "- a file whose references differ is compared by "
             + (f"`{clean(proof.compare, 300)} REFERENCE POLICY`" if proof.compare else "existence and size"),
             *(["- the profile stages job IO through a storage plugin: the `slurm` run goes through it without its "
                "storage settings, so that a difference is put down to SLURM or to staging"]
               if "slurm" in proof.runs else []),
             "", "| run | exit | seconds | files made | directory | report |", "|---|---|---|---|---|---|"]
    lines += [f"| {run} | {r['exit_code']} | {r['seconds']} | {r['files']} | `{clean(r['directory'])}` | "
              f"{clean(r['report'])} |" for run, r in proof.runs.items()]
    lines += [f"\n![the {run} run's jobs over time]({clean(r['timeline'])})" for run, r in proof.runs.items()
              if r.get("timeline", "").endswith(".svg")]
    if proof.findings:
        # With staging, each file twice: the staged run's (policy) and the run's without it (slurm).
        two = any(f.run != "policy" for f in proof.findings)
        lines += ["", "## Meaning", "", "| file |" + (" run |" if two else "") + " rule | verdict | why |",
                  "|---|---|---|---|" + ("---|" if two else "")]
        order = {v: i for i, v in enumerate((DIFFERS, MISSING, NONDETERMINISTIC, ONLY_POLICY, LOG, SAME))}
        lines += [f"| `{clean(f.path, 300, table=True)}` |" + (f" {f.run} |" if two else "")
                  + f" {clean(f.rule, 100, table=True) or '?'} | {f.verdict} | {clean(f.why, 300, table=True)} |"
                  for f in sorted(proof.findings, key=lambda f: (order[f.verdict], f.run != "policy", f.path))]
    if proof.faults:
        lines += ["", "## Faults", "", f"Applied to the `faults` run, each at a moment chosen from it "
                  f"({proof.runs.get('faults', {}).get('report', '')}).", "",
                  "| fault | verdict | landed (s into the run) | to the verdict (s) | what it did | what it hit | "
                  "evidence | why | fix |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {o.fault} | {o.verdict} | {'' if o.at_s is None else o.at_s} | "
                  f"{'' if o.to_verdict_s is None else o.to_verdict_s} | {clean(o.did, 300, table=True)} | "
                  f"{clean(', '.join(o.hit), 200, table=True)} | {clean('; '.join(o.evidence), 600, table=True)} | "
                  f"{clean(o.why, 600, table=True)} | {clean(o.fix, 300, table=True)} |" for o in proof.faults]
        lines += [f"\nUnder the faults, `{clean(f.path, 300)}` ({clean(f.rule, 100) or '?'}): {f.verdict}: "
                  f"{clean(f.why, 300)}" for f in proof.fault_findings[:50]]
        lines += [f"\n**Not undone**: {clean(u, 400)}" for u in proof.undone]
    if proof.audit:
        lines += ["", "## The profile's audit", "", "| area | rule | verdict | what the run showed | fix |",
                  "|---|---|---|---|---|"]
        order = {"finding": 0, "note": 1, "ok": 2}
        lines += [f"| {c.area} | {clean(c.rule, 100, table=True)} | {c.verdict} | {clean(c.seen, 400, table=True)} "
                  f"| {clean(c.fix, 400, table=True)} |" for c in sorted(proof.audit, key=lambda c: order[c.verdict])]
    if proof.suggested_diff:
        lines += ["", f"Suggested profile (whole: `{proof.suggested_profile}/config.yaml`; "
                  f"prove again with `--profile {proof.suggested_profile}`):", "", "```diff",
                  clean_block(proof.suggested_diff), "```"]
    (report_dir / "report.md").write_text("\n".join(lines) + "\n")


def clean_block(text: str) -> str:
    """A diff shown in a fenced block: each line through clean(), no fence inside."""
    return "\n".join(clean(line, 400) for line in text.splitlines())
