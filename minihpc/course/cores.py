"""The course module's cores, run on the live cluster through the slurm profile.

Each core lays out a clean lab, runs the module's commands (fixed per
../shared/seed/ERRATA.md), writes its proof artifacts to .proof/ and returns
checks made on evidence from the system: sacct rows, files on the shared
filesystem, exit codes and Snakemake's own messages.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from minihpc.course.labctl import Lab, Result, now_stamp, sacct_jobs, set_nfs_profile
from minihpc.runner import run_id

SLURM = "--profile profiles/slurm"
LOCAL = "--profile profiles/local"
DEMO_TARGETS = "results/staged_demo.txt results/atomic_ok.txt"


@dataclass
class Check:
    core: str
    name: str
    ok: bool
    detail: str = ""


class Core:
    """Collects checks for one core."""

    def __init__(self, name: str, lab: Lab) -> None:
        self.name, self.lab, self.checks = name, lab, []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(self.name, name, bool(ok), detail))
        return bool(ok)


def fresh(core: str, lab_name: str) -> tuple[Core, Lab]:
    """A core with its own clean lab laid out on the shared filesystem."""
    lab = Lab(lab_name)
    lab.reset()
    return Core(core, lab), lab


def submitted_ids(output: str) -> list[str]:
    return re.findall(r"has been submitted with SLURM jobid (\d+)", output)


def core1(prefix: str = "core1") -> Core:
    """Execution backends via profiles, and log retention."""
    c, lab = fresh("core1", f"{prefix}-slurm")
    lab.proof("core1.profile.slurm", lab.sh("cat profiles/slurm/config.yaml"))
    lab.proof("core1.profile.local", lab.sh("cat profiles/local/config.yaml"))
    # ERRATA 2: --print-compilation never names the executor; kept to show that.
    comp = lab.snakemake(f"{SLURM} -n --print-compilation")
    lab.proof("core1.slurm.compile", comp)
    c.check("print-compilation does not prove the executor (ERRATA 2)", "executor" not in comp.out.lower())

    since = now_stamp(lab)
    run = lab.snakemake(f"{SLURM} {DEMO_TARGETS}")
    jobs = sacct_jobs(lab, since)
    lab.proof("core1.slurm.run", run)
    lab.proof("core1.sacct", lab.sh(f"sacct -X -S {since} -o JobID,JobName%36,Comment%30,NodeList,State"))
    rid = run_id(run.out)
    c.check("slurm run exits 0", run.rc == 0, f"exit {run.rc}")
    c.check("one sacct job per rule, named by the run UUID",
            len(jobs) == 2 and rid is not None and all(j["JobName"] == rid for j in jobs), str(jobs))
    c.check("sacct comments are rule_<name>",
            sorted(j["Comment"] for j in jobs) == ["rule_atomic_ok", "rule_staged_demo"], str(jobs))
    c.check("every job COMPLETED on a compute node, none on login",
            all(j["State"] == "COMPLETED" and re.fullmatch(r"c\d+", j["NodeList"]) for j in jobs), str(jobs))
    logs = lab.sh("find logs/slurm -type f -name '*.log' | sort")
    lab.proof("core1.logs.kept", logs)
    c.check("keep-successful-logs: one log per successful job",
            sorted(logs.out.split()) == sorted(f"logs/slurm/rule_{j['Comment'][5:]}/{j['JobID']}.log" for j in jobs),
            logs.out)

    local = Lab(f"{prefix}-local")
    local.reset()
    since = now_stamp(local)
    lrun = local.snakemake(f"{LOCAL} {DEMO_TARGETS}")
    ljobs = sacct_jobs(local, since)
    lab.proof("core1.local.run", lrun, f"sacct jobs since {since}: {len(ljobs)}\n")
    c.check("local profile: exits 0 and no new sacct job", lrun.rc == 0 and ljobs == [], str(ljobs))
    sums = lab.sh(f"cd /shared && sha256sum {prefix}-slurm/results/* {prefix}-local/results/*")
    lab.proof("core1.outputs.sha256", sums)
    digests = [line.split()[0] for line in sums.out.splitlines()]
    c.check("both profiles give byte-identical outputs",
            len(digests) == 4 and digests[:2] == digests[2:], sums.out)
    c.checks.extend(log_retention(prefix).checks)
    return c


def log_retention(prefix: str = "core1") -> Core:
    """keep-successful-logs false: successful logs go, a failed job's log stays."""
    c, lab = fresh("core1", f"{prefix}-logs")
    # A boolean plugin flag cannot be switched off on the command line once the
    # profile sets it: the policy change goes into the profile, where it belongs.
    policy = lab.sh("sed -i 's/^slurm-keep-successful-logs: true$/slurm-keep-successful-logs: false/' "
                    "profiles/slurm/config.yaml && grep -n keep-successful profiles/slurm/config.yaml")
    run = lab.snakemake(f"{SLURM} --keep-going {DEMO_TARGETS} results/poison.txt")
    ids = submitted_ids(run.out)
    logs = lab.sh("find logs/slurm -type f -name '*.log' | sort")
    failed = lab.sh("cat logs/slurm/rule_poison/*.log")
    lab.proof("core1.logs.not-kept", policy, run, logs, failed)
    c.check("keep-successful-logs false: run fails (poison) after the others", run.rc != 0 and len(ids) == 3)
    c.check("only the failed job's log is kept", logs.out.split() and
            all(p.startswith("logs/slurm/rule_poison/") for p in logs.out.split()), logs.out)
    c.check("the failed job's log holds its stderr", "Wrote PARTIAL then crashing." in failed.out)
    return c


def core2(prefix: str = "core2") -> Core:
    """Retries, poison outputs and incomplete semantics, atomic publishing."""
    c, lab = fresh("core2", prefix)
    # Repro A: flaky once + retries (attempt arrives through resources, ERRATA 1).
    no_retry = lab.snakemake(f"{SLURM} results/flaky_once.txt")
    retry = lab.snakemake(f"{SLURM} --retries 1 results/flaky_once.txt")
    content = lab.read("results/flaky_once.txt")
    lab.proof("core2.flaky", no_retry, retry, lab.sh("cat results/flaky_once.txt"))
    c.check("without retries the flaky run exits non-zero", no_retry.rc != 0, f"exit {no_retry.rc}")
    c.check("with --retries 1 it succeeds and wrote attempt=2",
            retry.rc == 0 and content == "attempt=2\n", repr(content))

    # Repro B: poison output.
    default = lab.snakemake(f"{SLURM} results/poison.txt")
    after_default = lab.sh("test -e results/poison.txt && echo 'UNSAFE: poison remained' || echo 'OK: removed'")
    removed = after_default.out.strip() == "OK: removed"
    keep = lab.snakemake(f"{SLURM} --keep-incomplete results/poison.txt")
    kept_show = lab.sh("printf 'poison file content:\\n'; cat results/poison.txt")
    kept = lab.read("results/poison.txt")
    later = lab.snakemake(f"{SLURM} results/poison.txt")
    lab.proof("core2.poison", default, after_default, keep, kept_show, later)
    c.check("default: the failed job's output is removed", default.rc != 0 and removed)
    c.check("--keep-incomplete: the output stays, holding PARTIAL", keep.rc != 0 and kept == "PARTIAL\n", repr(kept))
    # Snakemake 9.27 records a failed job's kept output as complete: a later run
    # accepts the poison silently. This is the hazard the module warns about.
    c.check("a later run accepts the kept poison output (Snakemake 9.27 behaviour)",
            later.rc == 0 and "Nothing to be done" in later.out and lab.read("results/poison.txt") == "PARTIAL\n")

    # Repro C: the atomic writer never publishes a final file when it fails.
    fail = lab.snakemake(f"{SLURM} --keep-incomplete results/atomic_fail.txt")
    listing = lab.sh("ls -1 results/")
    lab.proof("core2.atomic", fail, listing)
    c.check("atomic writer failing before rename leaves no final file (even with --keep-incomplete)",
            fail.rc != 0 and "atomic_fail.txt\n" not in listing.out + "\n" and "atomic_fail.txt.tmp" in listing.out,
            listing.out)
    c.checks.extend(interrupted_run(prefix).checks)
    return c


def interrupted_run(prefix: str = "core2") -> Core:
    """The node running a job dies and Snakemake with it: the output is left
    marked incomplete, later runs refuse it until --rerun-incomplete replaces it.

    Both must die together. A job killed through SLURM alone is caught by the
    job's own Snakemake, which deletes the output: nothing is left to refuse.
    """
    c, lab = fresh("core2", f"{prefix}-interrupted")
    start = lab.sh(f"(setsid snakemake {SLURM} --config poison_mode=hang -- results/poison.txt "
                   "> hang.log 2>&1 & echo $! > hang.pid)")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and lab.read("results/poison.txt") != "PARTIAL\n":
        time.sleep(2)
    # The login session is lost: Snakemake dies without cleaning up.
    kill = lab.sh("kill -9 -- -$(cat hang.pid); squeue --me -h -o '%i %N'")
    job, node = (kill.out.split() + ["", ""])[:2]
    # ...and so does the node: every process of the lab user on it, at once.
    crash = lab.sh("pkill -KILL -u student; sleep 1; ps -u student -o pid,args | wc -l", service=node or "c1",
                   user="root")
    left = lab.sh(f"scancel {job}; sleep 2; squeue --me -h | wc -l; cat hang.log | grep -E 'submitted|Shell command'; "
                  "cat results/poison.txt; ls .snakemake/incomplete")
    refused = lab.snakemake(f"{SLURM} -- results/poison.txt")
    locked = lab.snakemake(f"{SLURM} --rerun-incomplete --config poison_mode=fixed -- results/poison.txt")
    unlock = lab.snakemake("--unlock")
    rerun = lab.snakemake(f"{SLURM} --rerun-incomplete --config poison_mode=fixed -- results/poison.txt")
    final = lab.read("results/poison.txt")
    lab.proof("core2.incomplete", start, kill, crash, left, refused, locked, unlock, rerun,
              lab.sh("cat results/poison.txt"))
    c.check("Snakemake and the job's node die mid-job: PARTIAL is left, marked incomplete",
            job.isdigit() and crash.rc == 0 and crash.out.strip() == "1" and left.out.startswith("0\n")
            and "PARTIAL" in left.out and "cmVzdWx0cy9wb2lzb24udHh0" in left.out, left.out[-300:])
    c.check("a later run refuses the incomplete output, pointing at --rerun-incomplete",
            refused.rc != 0 and "IncompleteFilesException" in refused.out
            and "--rerun-incomplete" in refused.out and "results/poison.txt" in refused.out, refused.out[-400:])
    c.check("the killed run's lock stops the next run until --unlock",
            locked.rc != 0 and "Directory cannot be locked" in locked.out and unlock.rc == 0, locked.out[-300:])
    c.check("--rerun-incomplete replaces it", rerun.rc == 0 and final == "COMPLETE\n", repr(final))
    return c


# The NFS delay D for the latency lesson. The SLURM plugin notices a finished
# job only at its next status poll, about 20 s after submission here: a delay
# shorter than that has already passed and no latency-wait is ever needed.
LAG_PROFILE, LAG = "lag-10", 40


def finished_at(output: str) -> float | None:
    """Epoch seconds of Snakemake's last `Finished jobid` timestamp."""
    stamps = re.findall(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\n(?:[^\n]*\n)?Finished jobid", output)
    # The nodes run in UTC.
    return calendar.timegm(time.strptime(stamps[-1], "%a %b %d %H:%M:%S %Y")) if stamps else None


LAG_TARGET = "results/staged_demo.txt"


def short_wait_under_lag(lab: Lab) -> tuple[Result, Result, Result]:
    """Under an NFS delay of LAG s, run LAG_TARGET with --latency-wait 2, then
    wait out the delay and look at what arrived. Leaves the lag profile on."""
    lag = set_nfs_profile(LAG_PROFILE, "--set", f"delay={LAG}")
    time.sleep(LAG + 1)  # the lab's own files, laid out from login, reach the compute nodes
    short = lab.snakemake(f"{SLURM} --latency-wait 2 {LAG_TARGET}")
    time.sleep(LAG + 1)
    after_short = lab.sh(f"ls -l results/; cat {LAG_TARGET}; snakemake -n {LAG_TARGET} | tail -n 2")
    return lag, short, after_short


def core3_latency(prefix: str = "core3") -> Core:
    """Outputs a job wrote on a compute node reach the submit host D seconds
    later (NFS profile lag-10): a --latency-wait below D fails with Snakemake's
    latency message, one above D waits about D and succeeds; with the profile
    off both succeed."""
    c, lab = fresh("core3", f"{prefix}-latency")
    target = LAG_TARGET
    try:
        lag, short, after_short = short_wait_under_lag(lab)
        lab.sh("rm -rf results .snakemake/metadata")
        time.sleep(1)
        long = lab.snakemake(f"{SLURM} --latency-wait 60 {target}")
        # The job ends right after writing its output (Snakemake itself later
        # touches the file, so its ctime is no witness of the write).
        ids = submitted_ids(long.out)
        ended = lab.sh(f"sacct -n -X -P -j {ids[-1] if ids else 0} -o End")
        off = set_nfs_profile("off")
        lab.sh("rm -rf results .snakemake/metadata")
        off_short = lab.snakemake(f"{SLURM} --latency-wait 2 {target}")
        lab.sh("rm -rf results .snakemake/metadata")
        off_long = lab.snakemake(f"{SLURM} --latency-wait 60 {target}")
    finally:
        set_nfs_profile("off")
    done = finished_at(long.out)
    try:
        end = calendar.timegm(time.strptime(ended.out.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        end = None
    waited = done - end if done is not None and end is not None else None
    lab.proof("core3.latency", lag, short, after_short, long, ended,
              f"waited for the output: {waited} s (NFS delay {LAG} s)\n", off, off_short, off_long)
    c.check(f"NFS delay {LAG} s, --latency-wait 2: fails with Snakemake's filesystem-latency message",
            short.rc != 0 and "Missing files after 2 seconds. This might be due to filesystem latency" in short.out,
            short.out[-600:])
    c.check(f"NFS delay {LAG} s, --latency-wait 60: succeeds after waiting for the output",
            long.rc == 0 and "Waiting at most 60 seconds for missing files" in long.out, long.out[-600:])
    # The delay runs from the write; sacct's End comes after the job's own
    # Snakemake has finished (seen up to 2 s later), and Snakemake re-checks
    # every latency-wait/10 s (6 s here): the wait is D, -4 s to +7 s.
    c.check(f"Snakemake saw the output about {LAG} s after the job wrote it and ended",
            waited is not None and LAG - 4 <= waited <= LAG + 7,
            f"waited {waited}")
    c.check("NFS profile off: --latency-wait 2 and 60 both succeed", off_short.rc == 0 and off_long.rc == 0,
            off_short.out[-300:] + off_long.out[-300:])
    return c


def core4(prefix: str = "core4") -> Core:
    """Generated unit tests gate the workflow."""
    c, lab = fresh("core4", prefix)
    run = lab.snakemake(f"{SLURM} {DEMO_TARGETS}")
    gen = lab.snakemake(f"{LOCAL} {DEMO_TARGETS} --generate-unit-tests")
    head = lab.sh("sed -n '1,80p' .tests/unit/test_staged_demo.py")
    passing = lab.sh("pytest -q -p no:cacheprovider .tests/unit/")
    lab.sh("sed -i 's/staged_demo=ok/staged_demo=changed/' scripts/staged_demo.py")
    failing = lab.sh("pytest -q -p no:cacheprovider .tests/unit/")
    lab.proof("core4.unit-tests", run, gen, head, passing, failing)
    c.check("--generate-unit-tests writes .tests/unit/test_<rule>.py",
            gen.rc == 0 and all(lab.exists(f".tests/unit/test_{r}.py") for r in ("staged_demo", "atomic_ok")))
    c.check("pytest .tests/unit passes", passing.rc == 0 and "2 passed" in passing.out, passing.out[-300:])
    c.check("after a change to a rule's output it fails",
            failing.rc != 0 and "1 failed" in failing.out and "test_staged_demo" in failing.out, failing.out[-300:])
    return c


def core5(prefix: str = "core5") -> Core:
    """Drift reports need metadata: --drop-metadata leaves them stale or blind.

    Snakemake 9.27 with --drop-metadata writes no record for the jobs it runs
    and deletes none: a rebuilt output keeps its old record (the report is now
    wrong), and an output that never had one is invisible to the report.
    """
    c, lab = fresh("core5", prefix)
    converge = lab.snakemake(f"{SLURM} {DEMO_TARGETS}")
    clean = lab.snakemake("--list-changes code")
    edit = lab.sh("printf '# harmless edit\\n' >> scripts/atomic_writer.py")
    drift = lab.snakemake("--list-changes code")
    records = "ls -l --time-style=+%T .snakemake/metadata"
    before = lab.sh(records)
    dropped = lab.snakemake(f"{SLURM} --drop-metadata {DEMO_TARGETS}")
    stale = lab.snakemake("--list-changes code")
    after = lab.sh(records)
    lab.proof("core5.drift", converge, clean, edit, drift, before, dropped, stale, after,
              lab.sh("cat workflow/VERSION"), "contract changed? no (a comment was added to a script)\n")

    # A workflow that has always run with --drop-metadata: nothing is ever flagged.
    blind_lab = Lab(f"{prefix}-dropped")
    blind_lab.reset()
    built = blind_lab.snakemake(f"{SLURM} --drop-metadata {DEMO_TARGETS}")
    none = blind_lab.sh("ls -A .snakemake/metadata 2>/dev/null | wc -l")
    blind_edit = blind_lab.sh("printf '# harmless edit\\n' >> scripts/atomic_writer.py")
    blind = blind_lab.snakemake("--list-changes code")
    dry = blind_lab.snakemake(f"-n {DEMO_TARGETS}")
    lab.proof("core5.blind", built, none, blind_edit, blind, dry)

    def listed(r) -> list[str]:
        return [line for line in r.out.splitlines() if line.startswith("results/")]

    c.check("converged run lists no code changes", converge.rc == 0 and listed(clean) == [], clean.out[-300:])
    c.check("after editing a script, --list-changes code lists its output",
            listed(drift) == ["results/atomic_ok.txt"], drift.out[-300:])
    c.check("a --drop-metadata run rebuilds it but leaves the old record: the report is stale",
            dropped.rc == 0 and "Code has changed since last execution" in dropped.out
            and listed(stale) == ["results/atomic_ok.txt"] and before.out == after.out, stale.out[-300:])
    c.check("outputs built with --drop-metadata have no record: code edits are never flagged",
            built.rc == 0 and none.out.strip() == "0" and listed(blind) == []
            and "missing provenance/metadata" in dry.out, blind.out[-300:] + dry.out[-300:])
    return c


CORES: dict[str, Callable[[], Core]] = {"core1": core1, "core2": core2, "core3-latency": core3_latency,
                                        "core4": core4, "core5": core5}
