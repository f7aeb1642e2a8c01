"""The course module's cores, run on the live cluster through the slurm profile.

Each core is given where to run (labctl.Labs: a cluster client, the site if
it is one, the proofs' directory), lays out a clean lab, runs the module's
commands (fixed per ../shared/seed/ERRATA.md), writes its proof artifacts to
.proof/ and returns checks made on evidence from the system: sacct rows,
files on the shared filesystem, exit codes and Snakemake's own messages.
"""

from __future__ import annotations

import calendar
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from minihpc.course.labctl import Lab, Labs, Result, now_stamp, sacct_jobs
from minihpc.proofs import Proof, line_with, tail
from minihpc.runner import run_id

SLURM = "--profile profiles/slurm"
LOCAL = "--profile profiles/local"
DEMO_TARGETS = "results/staged_demo.txt results/atomic_ok.txt"


def fresh(labs: Labs, core: str, lab_name: str) -> tuple[Proof, Lab]:
    """A core with its own clean lab laid out on the shared filesystem."""
    lab = labs.lab(lab_name)
    lab.reset()
    return Proof(core), lab


def submitted_ids(output: str) -> list[str]:
    return re.findall(r"has been submitted with SLURM jobid (\d+)", output)


def core1(labs: Labs, prefix: str = "core1") -> Proof:
    """Execution backends via profiles, and log retention (beside them, in a lab of its own)."""
    with ThreadPoolExecutor(1) as pool:
        retention = pool.submit(log_retention, labs, prefix)
        c = backends(labs, prefix)
        c.checks.extend(retention.result().checks)
    return c


def backends(labs: Labs, prefix: str) -> Proof:
    """The same targets through profiles/slurm and profiles/local: SLURM's jobs, kept logs, identical outputs."""
    c, lab = fresh(labs, "core1", f"{prefix}-slurm")
    lab.proof("core1.profile.slurm", lab.sh("cat profiles/slurm/config.yaml"))
    lab.proof("core1.profile.local", lab.sh("cat profiles/local/config.yaml"))
    # ERRATA 2: --print-compilation never names the executor; kept to show that.
    comp = lab.snakemake(f"{SLURM} -n --print-compilation")
    lab.proof("core1.slurm.compile", comp)
    c.check("print-compilation does not name the executor (ERRATA 2)", "executor" not in comp.out.lower(),
            line_with(comp.out.lower(), "executor") or tail(comp, 200))

    since = now_stamp(lab)
    run = lab.snakemake(f"{SLURM} {DEMO_TARGETS}")
    jobs = sacct_jobs(lab, since)
    lab.proof("core1.slurm.run", run)
    lab.proof("core1.sacct", lab.sh(f"sacct -X -S {since} -o JobID,JobName%36,Comment%30,NodeList,State"))
    rid = run_id(run.out)
    c.exit("slurm run exits 0", run)
    c.check("sacct has one job per rule of the run (2)", len(jobs) == 2, str(jobs))
    c.check("every job is named by the run's UUID", {j["JobName"] for j in jobs} == {rid},
            f"run {rid}; names {[j['JobName'] for j in jobs]}")
    c.check("sacct comments are rule_<name>",
            sorted(j["Comment"] for j in jobs) == ["rule_atomic_ok", "rule_staged_demo"], str(jobs))
    c.check("every job COMPLETED", {j["State"] for j in jobs} == {"COMPLETED"},
            str([(j["JobID"], j["State"]) for j in jobs]))
    nodes = list(labs.client.facts.nodes)
    c.check("every job ran on a compute node, none on login", {j["NodeList"] in nodes for j in jobs} == {True},
            f"{[(j['JobID'], j['NodeList']) for j in jobs]}; compute nodes {nodes}")
    logs = lab.sh("find logs/slurm -type f -name '*.log' | sort")
    lab.proof("core1.logs.kept", logs)
    c.check("keep-successful-logs: one log per successful job",
            sorted(logs.out.split()) == sorted(f"logs/slurm/rule_{j['Comment'][5:]}/{j['JobID']}.log" for j in jobs),
            logs.out)

    local = labs.lab(f"{prefix}-local")
    local.reset()
    since = now_stamp(local)
    lrun = local.snakemake(f"{LOCAL} {DEMO_TARGETS}")
    ljobs = sacct_jobs(local, since)
    lab.proof("core1.local.run", lrun, f"sacct jobs since {since}: {len(ljobs)}\n")
    c.exit("local profile: the run exits 0", lrun)
    c.check("local profile: no new sacct job", ljobs == [], str(ljobs))
    sums = lab.sh(f"cd .. && sha256sum {prefix}-slurm/results/* {prefix}-local/results/*")
    lab.proof("core1.outputs.sha256", sums)
    digests = [line.split()[0] for line in sums.out.splitlines()]
    c.check("both profiles give byte-identical outputs (each of the 2 digests twice)",
            sorted(Counter(digests).values()) == [2, 2], sums.out)
    return c


def log_retention(labs: Labs, prefix: str = "core1") -> Proof:
    """keep-successful-logs false: successful logs go, a failed job's log stays."""
    c, lab = fresh(labs, "core1", f"{prefix}-logs")
    # A boolean plugin flag cannot be switched off on the command line once the
    # profile sets it: the policy change goes into the profile, where it belongs.
    policy = lab.sh("sed -i 's/^slurm-keep-successful-logs: true$/slurm-keep-successful-logs: false/' "
                    "profiles/slurm/config.yaml && grep -n keep-successful profiles/slurm/config.yaml")
    run = lab.snakemake(f"{SLURM} --keep-going {DEMO_TARGETS} results/poison.txt")
    ids = submitted_ids(run.out)
    logs = lab.sh("find logs/slurm -type f -name '*.log' | sort")
    failed = lab.sh("cat logs/slurm/rule_poison/*.log")
    lab.proof("core1.logs.not-kept", policy, run, logs, failed)
    c.exit("keep-successful-logs false: the run fails (poison)", run, zero=False)
    c.check("all three jobs were submitted (--keep-going)", len(ids) == 3, f"SLURM job ids {ids}")
    c.check("only the failed job's log is kept (one log, under rule_poison/)",
            [p.split("/")[2] for p in logs.out.split()] == ["rule_poison"], logs.out)
    c.says("the failed job's log holds its stderr", failed, "Wrote PARTIAL then crashing.")
    return c


def core2(labs: Labs, prefix: str = "core2", interrupt: bool = True) -> Proof:
    """Retries, poison outputs and incomplete semantics, atomic publishing:
    three repros side by side, each in a lab of its own; with `interrupt`, a
    node and Snakemake killed together (minihpc only: it needs the cluster's
    fault injection)."""
    c = Proof("core2")
    with ThreadPoolExecutor(3) as pool:
        repros = [pool.submit(repro, labs, prefix) for repro in (flaky, poison, atomic)]
        for done in repros:
            c.checks.extend(done.result().checks)
    if interrupt:
        c.checks.extend(interrupted_run(labs, prefix).checks)
    return c


def flaky(labs: Labs, prefix: str) -> Proof:
    """Repro A: flaky once + retries (attempt arrives through resources, ERRATA 1)."""
    c, lab = fresh(labs, "core2", f"{prefix}-flaky")
    no_retry = lab.snakemake(f"{SLURM} results/flaky_once.txt")
    retry = lab.snakemake(f"{SLURM} --retries 1 results/flaky_once.txt")
    content = lab.read("results/flaky_once.txt")
    lab.proof("core2.flaky", no_retry, retry, lab.sh("cat results/flaky_once.txt"))
    c.exit("without retries the flaky run exits non-zero", no_retry, zero=False)
    c.exit("with --retries 1 it exits 0", retry)
    c.check("with --retries 1 the output was written by attempt 2", content == "attempt=2\n", repr(content))
    return c


def poison(labs: Labs, prefix: str) -> Proof:
    """Repro B: a poison output, removed by default, kept with --keep-incomplete."""
    c, lab = fresh(labs, "core2", f"{prefix}-poison")
    default = lab.snakemake(f"{SLURM} results/poison.txt")
    after_default = lab.sh("test -e results/poison.txt && echo 'UNSAFE: poison remained' || echo 'OK: removed'")
    removed = after_default.out.strip() == "OK: removed"
    keep = lab.snakemake(f"{SLURM} --keep-incomplete results/poison.txt")
    kept_show = lab.sh("printf 'poison file content:\\n'; cat results/poison.txt")
    kept = lab.read("results/poison.txt")
    later = lab.snakemake(f"{SLURM} results/poison.txt")
    lab.proof("core2.poison", default, after_default, keep, kept_show, later)
    c.exit("default: the poison job fails", default, zero=False)
    c.check("default: the failed job's output is removed", removed, after_default.out)
    c.exit("--keep-incomplete: the poison job fails", keep, zero=False)
    c.check("--keep-incomplete: the output stays, holding PARTIAL", kept == "PARTIAL\n", repr(kept))
    # Snakemake 9.27 records a failed job's kept output as complete: a later run
    # accepts the poison silently. This is the hazard the module warns about.
    c.says("a later run has nothing to do: it accepts the kept poison output (Snakemake 9.27)", later,
           "Nothing to be done")
    return c


def atomic(labs: Labs, prefix: str) -> Proof:
    """Repro C: the atomic writer never publishes a final file when it fails."""
    c, lab = fresh(labs, "core2", f"{prefix}-atomic")
    fail = lab.snakemake(f"{SLURM} --keep-incomplete results/atomic_fail.txt")
    listing = lab.sh("ls -1 results/")
    lab.proof("core2.atomic", fail, listing)
    c.exit("the atomic writer's job fails before its rename", fail, zero=False)
    c.check("no final file appears, even with --keep-incomplete", "atomic_fail.txt" not in listing.out.split(),
            listing.out)
    c.check("only its temporary file is left", "atomic_fail.txt.tmp" in listing.out.split(), listing.out)
    return c


def interrupted_run(labs: Labs, prefix: str = "core2") -> Proof:
    """The node running a job dies and Snakemake with it: the output is left
    marked incomplete, later runs refuse it until --rerun-incomplete replaces it.

    Both must die together. A job killed through SLURM alone is caught by the
    job's own Snakemake, which deletes the output: nothing is left to refuse.
    """
    c, lab = fresh(labs, "core2", f"{prefix}-interrupted")
    start = lab.sh(f"(setsid snakemake {SLURM} --config poison_mode=hang -- results/poison.txt "
                   "> hang.log 2>&1 & echo $! > hang.pid)")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and lab.read("results/poison.txt") != "PARTIAL\n":
        time.sleep(2)
    # The login session is lost: Snakemake dies without cleaning up.
    # Its job is the running one from this lab's directory: the user's other jobs (other labs side by side, a
    # class's other learners) may be queued or running beside it.
    kill = lab.sh("kill -9 -- -$(cat hang.pid); squeue --me -h -t RUNNING -o '%i %N %Z' | "
                  "awk -v d=\"$(pwd -P)\" '$3 == d {print $1, $2; exit}'")
    job, node = (kill.out.split() + ["", ""])[:2]
    # ...and so does the node: every process of the job on it, at once (the job's own Snakemake with them).
    # Only the job's: the lab user's other work on the node (other labs, a class's other learners) lives on.
    crash = lab.sh(f"pids=$(scontrol listpids {job or 0} | awk 'NR > 1 {{print $1}}'); echo \"$pids\" | wc -w; "
                   "kill -KILL $pids; sleep 1; ps -o pid= -p \"$(echo $pids | tr ' ' ,)\" | wc -l",
                   service=node or "c1", user="root")
    # Gone once its node has let go (a loaded node's epilog takes seconds): asked each second, up to 30.
    left = lab.sh(f"scancel {job}; for i in $(seq 30); do [ -z \"$(squeue -h -j {job or 0} 2>/dev/null)\" ] && "
                  f"break; sleep 1; done; squeue -h -j {job or 0} 2>/dev/null | wc -l; "
                  "cat hang.log | grep -E 'submitted|Shell command'; cat results/poison.txt; ls .snakemake/incomplete")
    refused = lab.snakemake(f"{SLURM} -- results/poison.txt")
    locked = lab.snakemake(f"{SLURM} --rerun-incomplete --config poison_mode=fixed -- results/poison.txt")
    unlock = lab.snakemake("--unlock")
    rerun = lab.snakemake(f"{SLURM} --rerun-incomplete --config poison_mode=fixed -- results/poison.txt")
    final = lab.read("results/poison.txt")
    lab.proof("core2.incomplete", start, kill, crash, left, refused, locked, unlock, rerun,
              lab.sh("cat results/poison.txt"))
    c.check("the hanging job was running on a compute node when Snakemake was killed", job.isdigit(), kill.out)
    killed, alive = (crash.out.split() + ["0", "?"])[:2]
    c.check("the job had processes on its node to kill", killed.lstrip("0").isdigit(), tail(crash))
    c.check("...and none of them is left", alive == "0", tail(crash))
    c.check("the job is not left in the queue", left.out.startswith("0\n"), tail(left))
    c.says("PARTIAL is left in results/poison.txt", left, "PARTIAL")
    # .snakemake/incomplete names each marker by the output's path in base64.
    c.says("the output is marked incomplete (.snakemake/incomplete/<base64 of results/poison.txt>)", left,
           "cmVzdWx0cy9wb2lzb24udHh0")
    c.exit("a later run fails", refused, zero=False)
    c.says("...with IncompleteFilesException", refused, "IncompleteFilesException")
    c.says("...naming the output", refused, "results/poison.txt")
    c.says("...and pointing at --rerun-incomplete", refused, "--rerun-incomplete")
    c.says("the killed run's lock stops the next run: Directory cannot be locked", locked,
           "Directory cannot be locked")
    c.exit("--unlock releases it", unlock)
    c.exit("--rerun-incomplete then exits 0", rerun)
    c.check("...and replaces PARTIAL with COMPLETE", final == "COMPLETE\n", repr(final))
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


def job_end(lab: Lab, output: str) -> tuple[Result, float | None]:
    """sacct's End of the last job a run's output says it submitted, and that
    End in epoch seconds (to the second; the nodes run in UTC), None if none."""
    ids = submitted_ids(output)
    ended = lab.sh(f"sacct -n -X -P -j {ids[-1] if ids else 0} -o End")
    try:
        return ended, calendar.timegm(time.strptime(ended.out.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return ended, None


def lag_on(lab: Lab, siblings: bool = False) -> Result:
    """The NFS delay of LAG s, on until the profile is switched off. The lab's
    files, laid out before the switch, show on the compute nodes at once.
    The delay is on the lab's own directory only (with `siblings`, on every
    directory whose name begins with the lab's too: LAB-wait): other labs and
    other users' work on the cluster keep the filesystem they had, as on a
    cluster a class shares."""
    own = lab.client.facts.on_mount(lab.workdir)
    return lab.client.set_nfs_profile(LAG_PROFILE, "--set", f"delay={LAG}",
                                      "--set", f"delay_path={own}{'*' if siblings else ''}/*")


def short_wait(lab: Lab) -> Result:
    """Under the delay (lag_on), LAG_TARGET with --latency-wait 2; what
    arrives later: arrived_after_lag."""
    return lab.snakemake(f"{SLURM} --latency-wait 2 {LAG_TARGET}")


def arrived_after_lag(lab: Lab, short: Result) -> tuple[Result, str]:
    """Once the delay has passed since the short run's job ended (short_wait;
    its output was written before that): what the login node sees, and
    LAG_TARGET as it reads it then. Counted from the job's end in sacct (to
    the second, so 2 s more), not from the run's: Snakemake notices the end
    at its next status check, up to 20 s later. Without a job end, from now."""
    end = job_end(lab, short.out)[1]
    visible_at = end + LAG + 2 if end is not None else time.time() + LAG + 1
    time.sleep(max(0.0, visible_at - time.time()))
    after_short = lab.sh(f"ls -l results/; cat {LAG_TARGET}; snakemake -n {LAG_TARGET} | tail -n 2")
    return after_short, lab.read(LAG_TARGET)


def short_wait_fails(c: Proof, short: Result, after_short: Result, arrived: str) -> None:
    """What a --latency-wait below the delay shows (short_wait): the
    run fails with Snakemake's latency message though its job completed, and
    what appears on the login node later is the job's whole output. Checked
    by demo-latency and by Core 3, whose test (under load) proves the demo."""
    c.exit(f"NFS delay {LAG} s, --latency-wait 2: the run fails", short, zero=False)
    c.says("...though its SLURM job completed", short, "completed successfully, but some output files are missing")
    c.says("signature: Missing files after 2 seconds. This might be due to filesystem latency.", short,
           "Missing files after 2 seconds. This might be due to filesystem latency.")
    c.check(f"what appears {LAG} s after the job ended is its complete output, not a partial one",
            arrived == "staged_demo=ok\n", after_short.out[-300:])


def core3_latency(labs: Labs, prefix: str = "core3") -> Proof:
    """Outputs a job wrote on a compute node reach the submit host D seconds
    later (NFS profile lag-10, its delay on this lesson's directories): a
    --latency-wait below D fails with Snakemake's latency message, one above D
    waits about D and succeeds; the same two runs in directories outside the
    delay both succeed."""
    c, lab = fresh(labs, "core3", f"{prefix}-latency")
    # The long run's own directory, laid out before the switch like the first; and the two
    # runs without the delay, in directories whose names the delay's pattern does not match.
    waits, plain, plain_waits = (labs.lab(f"{prefix}-{name}") for name in ("latency-wait", "nolag", "nolag-wait"))
    for each in (waits, plain, plain_waits):
        each.reset()
    target = LAG_TARGET
    try:
        lag = lag_on(lab, siblings=True)  # this lab's and the long run's (waits) directories
        # The long run goes beside the short one, its wait beside the short
        # run's failure and the wait for what arrives after it: its own
        # directory, its own job, the same delay. The two runs without the
        # delay go then too, each in its own directory.
        running = waits.spawn(f"snakemake {SLURM} --latency-wait 60 {target}")
        short = short_wait(lab)
        plain_running = (plain.spawn(f"snakemake {SLURM} --latency-wait 2 {target}"),
                         plain_waits.spawn(f"snakemake {SLURM} --latency-wait 60 {target}"))
        after_short, arrived = arrived_after_lag(lab, short)
        long = waits.collect(running)
        plain_short, plain_long = plain.collect(plain_running[0]), plain_waits.collect(plain_running[1])
        # The job ends right after writing its output (Snakemake itself later
        # touches the file, so its ctime is no witness of the write).
        ended, end = job_end(waits, long.out)
    finally:
        labs.client.set_nfs_profile("off")
    done = finished_at(long.out)
    waited = done - end if done is not None and end is not None else float("nan")
    lab.proof("core3.latency", lag, short, after_short, long, ended,
              f"waited for the output: {waited} s (NFS delay {LAG} s)\n",
              f"# the same two runs outside the delay, in {plain.workdir} and {plain_waits.workdir}:\n",
              plain_short, plain_long)
    short_wait_fails(c, short, after_short, arrived)
    c.exit(f"NFS delay {LAG} s, --latency-wait 60: the run exits 0", long)
    c.says("...after waiting for the output", long, "Waiting at most 60 seconds for missing files")
    # The delay runs from the write; sacct's End comes after the job's own
    # Snakemake has finished (seen up to 2 s later), and Snakemake re-checks
    # every latency-wait/10 s (6 s here): the wait is D, -4 s to +7 s.
    c.check(f"Snakemake saw the output about {LAG} s after the job wrote it and ended",
            LAG - 4 <= waited <= LAG + 7,
            f"waited {waited}")
    c.exit("outside the delay: --latency-wait 2 exits 0", plain_short)
    c.exit("outside the delay: --latency-wait 60 exits 0", plain_long)
    return c


def core4(labs: Labs, prefix: str = "core4") -> Proof:
    """Generated unit tests gate the workflow."""
    c, lab = fresh(labs, "core4", prefix)
    run = lab.snakemake(f"{SLURM} {DEMO_TARGETS}")
    gen = lab.snakemake(f"{LOCAL} {DEMO_TARGETS} --generate-unit-tests")
    head = lab.sh("sed -n '1,80p' .tests/unit/test_staged_demo.py")
    passing = lab.sh("pytest -q -p no:cacheprovider .tests/unit/")
    lab.sh("sed -i 's/staged_demo=ok/staged_demo=changed/' scripts/staged_demo.py")
    failing = lab.sh("pytest -q -p no:cacheprovider .tests/unit/")
    lab.proof("core4.unit-tests", run, gen, head, passing, failing)
    tests = lab.sh("ls .tests/unit")
    c.exit("--generate-unit-tests exits 0", gen)
    c.check("it wrote one test per rule: test_staged_demo.py, test_atomic_ok.py",
            {"test_staged_demo.py", "test_atomic_ok.py"} <= set(tests.out.split()), tests.out)
    c.exit("pytest .tests/unit passes", passing)
    c.says("...both tests", passing, "2 passed")
    c.exit("after a change to a rule's output pytest fails", failing, zero=False)
    c.says("...one test", failing, "1 failed")
    c.says("...the changed rule's", failing, "test_staged_demo")
    return c


def core5(labs: Labs, prefix: str = "core5") -> Proof:
    """Drift reports need metadata: --drop-metadata leaves them stale or blind.

    Snakemake 9.27 with --drop-metadata writes no record for the jobs it runs
    and deletes none: a rebuilt output keeps its old record (the report is now
    wrong), and an output that never had one is invisible to the report.
    """
    c, lab = fresh(labs, "core5", prefix)
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
    blind_lab = labs.lab(f"{prefix}-dropped")
    blind_lab.reset()
    built = blind_lab.snakemake(f"{SLURM} --drop-metadata {DEMO_TARGETS}")
    none = blind_lab.sh("ls -A .snakemake/metadata 2>/dev/null | wc -l")
    blind_edit = blind_lab.sh("printf '# harmless edit\\n' >> scripts/atomic_writer.py")
    blind = blind_lab.snakemake("--list-changes code")
    dry = blind_lab.snakemake(f"-n {DEMO_TARGETS}")
    lab.proof("core5.blind", built, none, blind_edit, blind, dry)

    def listed(r) -> list[str]:
        return [line for line in r.out.splitlines() if line.startswith("results/")]

    c.exit("the workflow converges", converge)
    c.check("a converged run lists no code changes", listed(clean) == [], tail(clean, 300))
    c.check("after editing a script, --list-changes code lists its output",
            listed(drift) == ["results/atomic_ok.txt"], tail(drift, 300))
    c.exit("a --drop-metadata run exits 0", dropped)
    c.says("...rebuilding the output because its code changed", dropped, "Code has changed since last execution")
    c.check("...writing no new record: .snakemake/metadata is unchanged", before.out == after.out,
            before.out + after.out)
    c.check("so the report is stale: it still lists the rebuilt output", listed(stale) == ["results/atomic_ok.txt"],
            tail(stale, 300))
    c.exit("a workflow always run with --drop-metadata builds", built)
    c.check("...and has no record at all", none.out.strip() == "0", tail(none))
    c.check("...so a code edit is never flagged", listed(blind) == [], tail(blind, 300))
    c.says("...and a dry run says provenance is missing", dry, "missing provenance/metadata")
    return c


CORES: dict[str, Callable[..., Proof]] = {"core1": core1, "core2": core2, "core3-latency": core3_latency,
                                          "core4": core4, "core5": core5}
