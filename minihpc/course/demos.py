"""Instructor demos: one command each, a real failure on the live cluster.

Every demo runs in a fresh lab as the lab user, shows the failure and its
signature (kept in .proof/demo.<name>.txt), checks that nothing poisoned is
left on the shared filesystem, puts the cluster back as it found it, and ends
with the fix in one paragraph (also in lab/GUIDE.md).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from minihpc.cluster import Cluster
from minihpc.course.cores import (
    LAG,
    SLURM,
    arrived_after_lag,
    fresh,
    lag_on,
    short_wait,
    short_wait_fails,
    submitted_ids,
)
from minihpc.course.labctl import LAB_USER, Lab, Labs, now_stamp
from minihpc.course.resources import MEM, TIME, run_rule, sacct_of
from minihpc.course.staging import COMPLETE, INPUT, STAGING, TARGET, job_prefix, shard_log
from minihpc.errors import BadInput
from minihpc.facts import SCRATCH
from minihpc.proofs import Proof, tail


@dataclass(frozen=True)
class Demo:
    title: str
    fix: str
    run: Callable[[Labs, str], Proof]


def no_poison(c: Proof, lab: Lab) -> None:
    """The failed run left neither the output nor its temporary shards on /shared."""
    listing = lab.sh("find results -type f 2>/dev/null | sort")
    c.check("no output and no temporary file of the job on the shared filesystem", listing.out.strip() == "",
            tail(listing))


def job_log(lab: Lab, run_out: str) -> str:
    ids = submitted_ids(run_out)
    r = lab.sh(f"cat {shard_log(ids[-1])}" if ids else "true")
    return r.out


def clear_job_scratch(client: Cluster, run_out: str) -> None:
    """What a site's epilog would do: remove the demo jobs' scratch on every node."""
    dirs = " ".join(job_prefix(j) for j in submitted_ids(run_out))
    if dirs:
        for node in client.facts.nodes:
            client.sh(f"rm -rf {dirs}", node=node, user="root")


def unwritable_scratch(labs: Labs, prefix: str = "demo") -> Proof:
    """The module's Repro B on the cluster: the job's scratch prefix is not writable."""
    c, lab = fresh(labs, "demo", f"{prefix}-unwritable-scratch")
    run = lab.snakemake(f"{STAGING} --remote-job-local-storage-prefix '/root/forbidden_scratch/$SLURM_JOB_ID' "
                        f"-- {TARGET}")
    log = job_log(lab, run.out)
    lab.proof("demo.unwritable-scratch", run,
              lab.sh(f"grep -h -A1 'Failed to create local storage prefix' {shard_log('*')}"))
    c.exit("the run fails", run, zero=False)
    c.says("...because its SLURM job FAILED", run, "SLURM status is: 'FAILED'")
    c.says("signature: Failed to create local storage prefix /root/forbidden_scratch/<jobid>/fs", log,
           "Failed to create local storage prefix /root/forbidden_scratch/")
    c.says("signature: PermissionError [Errno 13]", log, "PermissionError: [Errno 13] Permission denied")
    no_poison(c, lab)
    return c


# What the scratch-full demo leaves free on each node: room for the staged
# input (1.5 MB), none for the job's 2000 shards (a tmpfs page each).
LEAVE_FREE_MIB = 3
FILLER = f"{SCRATCH}/.demo-filler"


def scratch_full(labs: Labs, prefix: str = "demo") -> Proof:
    """Another job's leftovers fill node scratch: the job gets ENOSPC."""
    c, lab = fresh(labs, "demo", f"{prefix}-scratch-full")
    client = labs.client
    nodes = list(client.facts.nodes)
    fill = (f"free=$(df -B1 --output=avail {SCRATCH} | tail -n 1); "
            f"fallocate -l $((free - {LEAVE_FREE_MIB} * 1024 * 1024)) {FILLER} && df -h {SCRATCH} | tail -n 1")
    run = None
    try:
        filled = [client.sh(fill, node=n, user="root") for n in nodes]
        run = lab.snakemake(f"{STAGING} -- {TARGET}")
        log = job_log(lab, run.out)
        left = {n: client.scratch(n, f"{SCRATCH}/{LAB_USER}").files for n in nodes}
        lab.proof("demo.scratch-full", *filled, run,
                  lab.sh(f"grep -h -B1 -A1 'No space left on device' {shard_log('*')} | head -n 12"),
                  "# left on scratch by the failed job:\n" +
                  "".join(f"{n}: {len(ps)} file(s) {ps[:3]}\n" for n, ps in left.items()))
    finally:
        for n in nodes:
            client.sh(f"rm -f {FILLER}", node=n, user="root")
        if run is not None:
            clear_job_scratch(client, run.out)
    # Part of the fix: SLURM knows each node's scratch (TmpDisk) and refuses a
    # job that asks for more with --tmp, before it runs anywhere.
    too_big = lab.sh("sbatch --tmp=$(( $(sinfo -h -o %d | sort -n | tail -n 1) + 1 )) --wrap true")
    lab.proof("demo.scratch-full.tmp", lab.sh("sinfo -N -o '%N %d'"), too_big)
    c.check("every compute node's scratch was filled", all(f.rc == 0 for f in filled), str([f.out for f in filled]))
    c.exit("the run fails", run, zero=False)
    c.says("signature: OSError: [Errno 28] No space left on device", log, "OSError: [Errno 28] No space left on device")
    c.says("...in the job, working on scratch", log, "shards in /scratch/")
    c.check("the failed job's temporary files stay on its node's scratch",
            any(p.endswith((".sorted", ".txt")) for ps in left.values() for p in ps), str(left)[:300])
    c.exit("sbatch --tmp above the nodes' TmpDisk is refused", too_big, zero=False)
    c.says("...with: Temporary disk specification can not be satisfied", too_big,
           "Temporary disk specification can not be satisfied")
    no_poison(c, lab)
    return c


SHARED_COPIES = "persistence software-deployment sources source-cache storage-local-copies"


def prefix_mismatch(labs: Labs, prefix: str = "demo") -> Proof:
    """storage-local-copies declared shared while both prefixes are node-local."""
    c, lab = fresh(labs, "demo", f"{prefix}-prefix-mismatch")
    # The input already on the shared filesystem, as raw data would be.
    data = lab.snakemake(f"{STAGING} -- {INPUT}")
    run = lab.snakemake(f"{STAGING} --shared-fs-usage {SHARED_COPIES} -- {TARGET}")
    ids = submitted_ids(run.out)
    node = lab.sh(f"sacct -n -X -P -j {ids[-1] if ids else 0} -o NodeList").out.strip()
    left = labs.client.scratch(node, job_prefix(ids[-1])).files if ids and node else []
    content = lab.read(TARGET)
    where = f"# after the run, job {ids[-1] if ids else '?'}'s prefix on {node}:\n"
    lab.proof("demo.prefix-mismatch", data, run, where + "".join(f"  {p}\n" for p in left), lab.sh(f"cat {TARGET}"))
    clear_job_scratch(labs.client, run.out)
    before_submit = run.out.split("has been submitted")[0]
    c.exit("the input is made on the shared filesystem", data)
    c.says("signature: the main process stages the input on the login node before submitting", before_submit,
           f"Retrieving from storage: {INPUT}")
    c.exit("the run exits 0", run)
    c.check("signature: after the successful job its input's local copy stays on the node's scratch",
            any(p.endswith(f"/fs/{INPUT}") for p in left), str(left))
    c.check("...and so does its output's", any(p.endswith(f"/fs/{TARGET}") for p in left), str(left))
    c.check("the output on the shared filesystem is complete (nothing poisoned)",
            (content or "").startswith(COMPLETE), repr(content))
    return c


# An environment with Snakemake and the SLURM executor but without the fs
# storage plugin: the cluster venv's packages, linked one by one, bar one.
NO_PLUGIN_ENV = "/tmp/no-fs-plugin"
MAKE_NO_PLUGIN_ENV = f"""
env={NO_PLUGIN_ENV}
rm -rf "$env" && python3 -m venv --without-pip "$env"
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
site=$(/opt/minihpc/venv/bin/python -c "$purelib"); dst=$("$env/bin/python" -c "$purelib")
for e in "$site"/*; do
  case ${{e##*/}} in snakemake_storage_plugin_fs*) ;; *) ln -s "$e" "$dst/" ;; esac
done
"$env/bin/python" -c 'import snakemake, snakemake_executor_plugin_slurm; print("snakemake, slurm executor: present")'
"$env/bin/python" -c 'import snakemake_storage_plugin_fs' 2>&1 | tail -n 1
"""


def no_plugin(labs: Labs, prefix: str = "demo") -> Proof:
    """The staging profile used where snakemake-storage-plugin-fs is not installed."""
    c, lab = fresh(labs, "demo", f"{prefix}-no-plugin")
    try:
        env = lab.sh(MAKE_NO_PLUGIN_ENV)
        run = lab.sh(f"{NO_PLUGIN_ENV}/bin/python -m snakemake {STAGING} -- {TARGET}")
        # This lab's jobs (by working directory): the user's other labs may have jobs queued meanwhile.
        queue = lab.sh(f"squeue --me -h -o %Z | grep -cxF -- {shlex.quote(lab.workdir)}")
    finally:
        lab.sh(f"rm -rf {shlex.quote(NO_PLUGIN_ENV)}")
    lab.proof("demo.no-plugin", env, run)
    c.says("the environment has Snakemake and the SLURM executor", env, "snakemake, slurm executor: present")
    c.says("...but not the fs plugin", env, "No module named 'snakemake_storage_plugin_fs'")
    c.exit("the run fails", run, zero=False)
    c.says("signature: Error loading Snakemake plugin fs: The package snakemake-storage-plugin-fs is not installed.",
           run, "Error loading Snakemake plugin fs: The package snakemake-storage-plugin-fs is not installed.")
    c.never_says("it stops before anything is submitted", run, "submitted")
    c.check("...no job of this lab is queued", queue.out.strip() == "0", tail(queue))
    c.check("...and no rule ran: data/records.txt was never made", not lab.exists("data/records.txt"),
            "data/records.txt exists" if lab.exists("data/records.txt") else "data/records.txt absent")
    no_poison(c, lab)
    return c


def latency_too_short(labs: Labs, prefix: str = "demo") -> Proof:
    """--latency-wait below the shared filesystem's lag."""
    c, lab = fresh(labs, "demo", f"{prefix}-latency")
    try:
        lag = lag_on(lab)
        short = short_wait(lab)
        after, arrived = arrived_after_lag(lab, short)
    finally:
        off = labs.client.set_nfs_profile("off")
    lab.proof("demo.latency", lag, short, f"# {LAG} s after the job ended, on the login node:\n", after, off)
    short_wait_fails(c, short, after, arrived)
    return c


def oom(labs: Labs, prefix: str = "demo") -> Proof:
    """A rule whose memory request is too small, whatever the attempt."""
    c, lab = fresh(labs, "demo", f"{prefix}-oom")
    r = run_rule(lab, "mem_scaled", f"--retries 1 --set-resources mem_scaled:mem_mb=400 -- {MEM}")
    run, jobs, log = r.run, r.jobs, r.log
    lab.proof("demo.oom", run, log, sacct_of(lab, jobs, "JobID,State,ExitCode,ReqMem,MaxRSS"))
    c.exit("the run fails, retries or not", run, zero=False)
    c.check("both attempts asked for the same 400M and FAILED", [(j["ReqMem"], j["State"]) for j in jobs] ==
            [("400M", "FAILED")] * 2, str(jobs))
    c.says("signature: slurmstepd: error: Exceeded job memory limit", log, "slurmstepd-")
    c.says("...Exceeded job memory limit", log, "Exceeded job memory limit")
    c.check("...a step exceeded memory limit (RSS > 419430400 bytes), being killed",
            re.search(r"exceeded memory limit \(\d+ > 419430400\), being killed", log.out) is not None, tail(log))
    no_poison(c, lab)
    return c


def timeout(labs: Labs, prefix: str = "demo") -> Proof:
    """A rule whose runtime is too short for its work."""
    c, lab = fresh(labs, "demo", f"{prefix}-timeout")
    r = run_rule(lab, "time_scaled", f"-- {TIME}")
    run, jobs, log = r.run, r.jobs, r.log
    lab.proof("demo.timeout", run, log, sacct_of(lab, jobs, "JobID,State,Timelimit,Elapsed"))
    c.exit("the run fails", run, zero=False)
    c.check("its job ended TIMEOUT at its 1-minute limit", [(j["State"], j["Timelimit"]) for j in jobs] ==
            [("TIMEOUT", "00:01:00")], str(jobs))
    c.says("signature: *** JOB N ON cX CANCELLED AT ... DUE TO TIME LIMIT ***", log, "DUE TO TIME LIMIT")
    no_poison(c, lab)
    return c


BIG, LONG = "results/partition/big_join.txt", "results/partition/long_haul.txt"
BIG_MB = 4000  # big_join's mem_mb in lab/Snakefile (the tests read it here)
PARTITIONS_PROFILE = "--workflow-profile profiles/lab-partitions"


def partition(labs: Labs, prefix: str = "demo") -> Proof:
    """Rules asking for more memory, or more time, than the default partition allows."""
    f = labs.client.facts
    if not f.mem_mb < BIG_MB <= max(f.node_mem_mb.values()):
        raise BadInput(f"demo-partition needs standard nodes below {BIG_MB} MiB and a bigmem node with at least "
                           f"that (this cluster: NODE_MEM_MB={f.mem_mb}, bigmem {max(f.node_mem_mb.values())})",
                           "bring it up with the default sizes: minihpc up --mem-mb 3000 --bigmem-mb 6000")
    c, lab = fresh(labs, "demo", f"{prefix}-partition")
    big, long = lab.snakemake(f"{SLURM} {BIG}"), lab.snakemake(f"{SLURM} {LONG}")
    no_poison(c, lab)  # before the fix makes the outputs
    since = now_stamp(lab)
    fixed = lab.snakemake(f"{SLURM} {PARTITIONS_PROFILE} {BIG} {LONG}")
    jobs = {j["Comment"].removeprefix("rule_"): j for j in labs.client.sacct(
        since, ("JobID", "Comment", "Partition", "NodeList", "State", "ReqMem", "Timelimit", "WorkDir"))
        if j["WorkDir"] == lab.workdir}
    lab.proof("demo.partition", big, long, lab.sh("cat profiles/lab-partitions/config.yaml"), fixed,
              lab.sh(f"cat {BIG} {LONG}"), sacct_of(lab, list(jobs.values()),
                                                                      "JobID,Comment,Partition,NodeList,State,ReqMem,Timelimit"))
    c.exit(f"big_join (mem_mb={BIG_MB}) fails in the default partition", big, zero=False)
    c.says("signature: SLURM sbatch failed ... Memory required by task is not available", big,
           "Memory required by task is not available")
    c.check("...refused at submission: no job was queued", submitted_ids(big.out) == [], tail(big))
    c.exit("long_haul (runtime 6 h) fails in the default partition", long, zero=False)
    c.says("signature: Requested time limit is invalid (missing or exceeds some limit)", long,
           "Requested time limit is invalid (missing or exceeds some limit)")
    c.check("...refused at submission: no job was queued", submitted_ids(long.out) == [], tail(long))
    c.exit("fix: the workflow profile names each rule's partition, and the run succeeds", fixed)
    bj, lh = jobs.get("big_join", {}), jobs.get("long_haul", {})
    c.check(f"big_join ran in bigmem with its {BIG_MB}M",
            (bj.get("Partition"), bj.get("ReqMem"), bj.get("State")) == ("bigmem", f"{BIG_MB}M", "COMPLETED"), str(bj))
    c.check("...on the bigmem node", f.node_mem_mb.get(bj.get("NodeList", "")) == max(f.node_mem_mb.values()),
            f"{bj.get('NodeList')}: {f.node_mem_mb}")
    c.check("long_haul ran in long with its 6-hour limit",
            (lh.get("Partition"), lh.get("Timelimit"), lh.get("State")) == ("long", "06:00:00", "COMPLETED"), str(lh))
    c.says("...and the job itself saw partition=bigmem", lab.read(BIG) or "", "partition=bigmem")
    return c


PRESSURE = "-s pressure/Snakefile"
# What the plugin's rejected sbatch call said, shown nowhere by Snakemake.
TOO_MANY_CPUS = "More processors requested than permitted"


def group_too_big(labs: Labs, prefix: str = "demo") -> Proof:
    """A group of more parallel jobs than a node has CPUs: sbatch refuses every
    group job, and Snakemake drops sbatch's message (GroupJob.log_error
    ignores it in Snakemake 9.27.1): only the call survives, under --verbose."""
    f = labs.client.facts
    per = 3 * f.cpus
    c, lab = fresh(labs, "demo", f"{prefix}-group-too-big")
    base = f"{SLURM} {PRESSURE} --config jobs={2 * per} seconds=1 --groups part=g --group-components g={per}"
    since = now_stamp(lab)
    big = lab.snakemake(f"{base} --verbose")
    calls = re.findall(r"^sbatch call: (sbatch .*?) --wrap=", big.out, re.M)
    queued = [j for j in labs.client.sacct(since, ("JobID", "WorkDir", "State")) if j["WorkDir"] == lab.workdir]
    # The call as the plugin made it, all but the command: SLURM's own answer (held, and
    # cancelled, should it ever be accepted).
    name = re.search(r"--job-name (\S+)", calls[0]).group(1) if calls else ""
    again = lab.sh(f"{calls[0]} --hold --wrap true; rc=$?; scancel --me -n {name}; exit $rc") if calls else None
    fixed_since = now_stamp(lab)
    fixed = lab.snakemake(f"{base} --cores {f.cpus}")
    jobs = [j for j in labs.client.sacct(fixed_since, ("JobID", "WorkDir", "AllocCPUS", "State", "Timelimit"))
            if j["WorkDir"] == lab.workdir]
    lab.proof("demo.group-too-big", big, *([again] if again else []), fixed,
              sacct_of(lab, jobs, "JobID,Comment,AllocCPUS,ReqMem,Timelimit,NodeList,State"))
    c.exit(f"the run with {per} parts per group fails", big, zero=False)
    c.says("signature: Error in group g", big, "Error in group g")
    c.check(f"...every group job asked sbatch for --cpus-per-task={per}",
            re.findall(r"--cpus-per-task=(\d+)", " ".join(calls)) == [str(per)] * 2, "\n".join(calls)[:600])
    c.never_says(f"...yet SLURM's answer ({TOO_MANY_CPUS}) is nowhere in Snakemake's output", big, TOO_MANY_CPUS)
    c.check("...and no job was queued", queued == [], str(queued))
    c.says(f"the logged call, run again, gets SLURM's answer: {TOO_MANY_CPUS}", again or "", TOO_MANY_CPUS)
    c.exit(f"fix: --cores {f.cpus} fits each group to a node, and the run succeeds", fixed)
    c.check(f"...each group job asked for at most {f.cpus} CPUs and COMPLETED",
            sorted((int(j["AllocCPUS"]) <= f.cpus, j["State"]) for j in jobs) == [(True, "COMPLETED")] * 2, str(jobs))
    c.says("...and the fan-in saw every part", lab.read("pressure/total.txt") or "",
           f"{2 * per} parts, sum {sum(range(2 * per))}")
    return c


MPI_OK, MPI_BAD = "results/mpi/pi.json", "results/mpi/pi_no_mpi.json"
ENV_MODULES = "--sdm env-modules"  # Snakemake loads each rule's envmodules (the lab's profile does not)
MPI_STEPS = "JobID,NTasks,NNodes,NodeList,State,ExitCode"


def mpi_without_mpi(labs: Labs, prefix: str = "demo") -> Proof:
    """An MPI rule without the `mpi` resource: the SLURM plugin runs the
    job's Snakemake in a one-task step, and the rule's own srun cannot start
    its ranks in it."""
    c, lab = fresh(labs, "demo", f"{prefix}-mpi")
    bad = run_rule(lab, "mpi_pi_no_mpi", f"{ENV_MODULES} -- {MPI_BAD}")
    left = lab.sh("find results -type f 2>/dev/null | sort")
    # A rank may die of Open MPI 5.0.7's crash in MPI_Init beside another MPI step (docs/modules.md): the
    # fixed rule gets one more attempt, as a site's profile gives it (`retries`); its last is judged.
    fixed = run_rule(lab, "mpi_pi", f"{ENV_MODULES} --retries 1 -- {MPI_OK}")
    bad_steps = sacct_of(lab, bad.jobs, MPI_STEPS)
    fixed_steps = sacct_of(lab, fixed.jobs[-1:], MPI_STEPS)
    out = lab.read(MPI_OK) or ""
    lab.proof("demo.mpi", bad.run, bad.log, bad_steps, fixed.run, lab.sh(f"cat {MPI_OK}"), fixed_steps)
    c.exit("the rule without `mpi` fails", bad.run, zero=False)
    c.says("signature: srun: error: Unable to create step for job N: More processors requested than permitted",
           bad.log, "More processors requested than permitted")
    rows = [r.split("|") for r in bad_steps.out.splitlines()[1:]]
    c.check("...its allocation was on two nodes", [r[2] for r in rows if "." not in r[0]] == ["2"], tail(bad_steps))
    c.check("...its one step a single task on one node (the job's Snakemake, srun -n1)",
            [(r[1], r[2]) for r in rows if r[0].endswith(".0")] == [("1", "1")], tail(bad_steps))
    c.check("...and left no output", left.out.strip() == "", tail(left))
    c.exit('fix: mpi="srun" and {resources.mpi} -n {resources.tasks} in the command: the run succeeds', fixed.run)
    c.says("...mpi-pi says two ranks, one on each node", out.replace(" ", ""), '"ranks":2,"nodes":["c1","c2"]')
    rows = [r.split("|") for r in fixed_steps.out.splitlines()[1:]]
    c.check("...and sacct shows its step .0 with both tasks on both nodes",
            [(r[1], r[2], r[4]) for r in rows if r[0].endswith(".0")] == [("2", "2", "COMPLETED")], tail(fixed_steps))
    return c


DEMOS: dict[str, Demo] = {
    "demo-unwritable-scratch": Demo(
        "unwritable scratch prefix (permission error)",
        "The job's scratch prefix must be creatable by the job's user on every compute node. Put both "
        'prefixes on node-local scratch the user owns (`/scratch/$USER/main`, '
        '`/scratch/$USER/job-$SLURM_JOB_ID`) in the profile, not on the command line, and prove them with one '
        'staged job as the user who runs production: as root the same run succeeds (ERRATA 9).',
        unwritable_scratch),
    "demo-scratch-full": Demo(
        "node scratch full (ENOSPC)",
        "Node scratch is small and every job on the node shares it; a failed job's files stay behind "
        '(Snakemake removes only the local copies of declared inputs and outputs, and only after success). '
        'Ask SLURM for room (`sbatch --tmp`, e.g. `slurm_extra: "--tmp=2G"`) so the job lands on a node whose '
        '`TmpDisk` has it, keep temporary files under the per-job prefix, and clear per-job prefixes in an '
        "epilog. Snakemake checks the staged inputs' sizes against free space (`Cannot store ... no waiting "
        'since no wait time was configured with --wait-for-free-local-storage`), never what the job writes.',
        scratch_full),
    "demo-prefix-mismatch": Demo(
        "storage-local-copies declared shared while the prefixes are node-local",
        'Declare `storage-local-copies` only when both prefixes name the same directory on a filesystem every '
        'node shares. With per-node scratch leave it out, as `profiles/slurm-staging` does: each job stages '
        'for itself and removes its copies. Declared shared, the main process stages every input on the '
        "submit host for nothing and no one removes the jobs' copies, so node scratch fills up job by job.",
        prefix_mismatch),
    "demo-no-plugin": Demo(
        "storage plugin missing",
        'Install `snakemake-storage-plugin-fs` in the environment that runs Snakemake, on the submit host and '
        'the compute nodes (one environment at one path, as here), pinned with Snakemake in one lock file. '
        "Check with `python -c 'import snakemake_storage_plugin_fs'`. A profile without "
        '`default-storage-provider` fails nothing: scratch just stays empty.',
        no_plugin),
    "demo-latency": Demo(
        "latency-wait too short for the shared filesystem's lag",
        'Outputs reach the submit host only when the shared filesystem shows them there. Set `latency-wait` '
        'in the profile above the worst lag you measure (`profiles/slurm` uses 30 s), not per run; the failed '
        "run's output arrives later, complete, and a rerun picks it up without running the job again.",
        latency_too_short),
    "demo-oom": Demo(
        "a job over its memory request (Slurm kills it)",
        "Slurm samples every step's memory and kills one that exceeds its request: `Exceeded job memory "
        "limit` in the job's log, the step CANCELLED with exit 0:9 and the job FAILED (OUT_OF_MEMORY only "
        "with task/cgroup). A fixed request fails on every attempt. Give the rule "
        "`mem_mb=lambda wildcards, attempt: 400 * attempt` and run with `retries` in the profile: attempt 2 "
        "asks for twice as much (Core 6). Size the first request from sacct's MaxRSS of a real run "
        "(`--slurm-efficiency-report`).",
        oom),
    "demo-timeout": Demo(
        "a job over its runtime (TIMEOUT)",
        "A job that outlives its time limit ends TIMEOUT (`CANCELLED AT ... DUE TO TIME LIMIT` in its log) and "
        "its output is removed. Give the rule a `runtime` (minutes) that grows with the attempt, e.g. "
        "`runtime=lambda wildcards, attempt: 60 * attempt`, within the partition's MaxTime, and `retries` in "
        "the profile (Core 6). Without its own `runtime` the job gets the profile's default (`runtime: 30` in "
        "profiles/slurm's default-resources), and without that the partition's DefaultTime.",
        timeout),
    "demo-partition": Demo(
        "a rule asking for more memory or time than its partition allows (sbatch refuses it)",
        "With EnforcePartLimits a request beyond the partition's MaxMemPerNode or MaxTime is refused at "
        "submission (`Memory required by task is not available`, `Requested time limit is invalid`), and the "
        "plugin stops the run. Keep the rule's own `mem_mb` and `runtime` honest, and say which partition "
        "fits in a workflow profile next to the site's: `set-resources: {rule: {slurm_partition: bigmem}}`, "
        "used with `--workflow-profile`. `minihpc status` (sinfo, scontrol show partition) lists the limits.",
        partition),
    "demo-group-too-big": Demo(
        "a group of more parallel jobs than a node has CPUs (sbatch refuses it, Snakemake hides why)",
        "A group job asks for the CPUs of every member that can run at once: `--group-components g=6` of 1-CPU "
        "jobs asks `--cpus-per-task=6`, which no 2-CPU node has, and sbatch refuses each group. Snakemake 9.27.1 "
        "hides why: its group error (`GroupJob.log_error` in `snakemake/jobs.py`) drops the message the plugin "
        "reports, so even `--verbose` shows only the sbatch call; run that call yourself to see SLURM's answer. "
        "Fix: `--cores N` with N a node's CPUs caps what any job asks for, so Snakemake layers each group into N "
        "CPUs and adds up the layers' runtime; or keep groups no wider than a node. Plugin 2.8.0 runs a group's "
        "members one after the other (its job step gets `--jobs 1`), so `--cores 1` packs a group into one CPU "
        "and loses nothing.",
        group_too_big),
    "demo-mpi": Demo(
        "an MPI rule without the `mpi` resource (its srun cannot start the ranks)",
        'An MPI rule needs `mpi="srun"` (or `"mpiexec"`) and `tasks=N` in its resources, and its command must '
        "launch through them: `{resources.mpi} -n {resources.tasks} PROGRAM`. Without `mpi` the SLURM plugin "
        "still asks for the tasks (`--ntasks`), but runs the job's Snakemake with `srun -n1`: the rule's own "
        "`srun -n 2` is a step inside a one-task step, and SLURM refuses it (`More processors requested than "
        "permitted`). Check that the program's rank 0 reports the ranks you asked for, and that sacct shows the "
        "job's step `.0` with them (`NTasks`, `NodeList`). `nodes=N` spreads the ranks over N nodes.",
        mpi_without_mpi),
}
